#!/usr/bin/env python3
"""Build data/english/devils_dictionary.txt: one English sentence per line.

Source: Ambrose Bierce, "The Devil's Dictionary" (1911, public domain), as shipped by the
Debian package `dict-devil` (file /usr/share/dictd/devil.dict.dz). Reproduce with:

    apt-get download dict-devil && dpkg-deb -x dict-devil_*.deb x
    python3 scripts/make_corpus.py x/usr/share/dictd/devil.dict.dz > data/english/devils_dictionary.txt

Only prose is kept (indented verse and attributions are dropped); each entry's headword becomes
"Headword:" before its first sentence so that definitions read as complete lines. Sentences of
5 to 60 words are kept, in order, without duplicates.
"""
import gzip
import re
import sys

HEAD = re.compile(r"^([A-Z][A-Z' .-]+),\s+(?:[a-z]+\.\s*)+")


def paragraphs(text):
    start = text.index("PREFACE")
    para = []
    for line in text[start:].splitlines()[1:]:
        if line.strip():
            para.append(line)
        elif para:
            yield para
            para = []
    if para:
        yield para


def main():
    text = gzip.open(sys.argv[1], "rt", encoding="latin-1").read()
    seen = set()
    out = []
    for para in paragraphs(text):
        # verse and signatures are indented by 4+ spaces on every line
        if all(l.startswith("    ") for l in para):
            continue
        joined = " ".join(l.strip() for l in para)
        joined = re.sub(r"\{([^}]*)\}", r"\1", joined)
        joined = re.sub(r"\[[^\]]*\]", "", joined)
        joined = joined.replace("_", "").replace("--", "-")
        m = HEAD.match(joined)
        if m:
            word = m.group(1).strip().capitalize()
            joined = word + ": " + joined[m.end():]
        joined = re.sub(r"\s+", " ", joined).strip()
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", joined):
            s = s.strip()
            n = len(s.split())
            if 5 <= n <= 60 and s[-1] in ".!?\"'" and s not in seen and s.isascii():
                seen.add(s)
                out.append(s)
    for s in out:
        print(s)


if __name__ == "__main__":
    main()
