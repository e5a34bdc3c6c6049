//! The layering of `src/`, checked: every `crate::` path (and every `super::`
//! path that leaves its top-level module) must point at a module the file's
//! layer may use, and the modules (top-level ones, and each family under
//! `compression`) must form no import cycle.
//!
//! The rules (docs/architecture.md explains them), bottom to top:
//!
//! | layer | modules | may use |
//! |---|---|---|
//! | 0 error | `error` | nothing (family error types, see below) |
//! | 1 leaves | `parallel`, `math` | error |
//! | 2 core | `matrix`, `pass`, `pipeline`, `metrics` | the layers below and each other |
//! | 3 kernels | `kernels` | the layers below |
//! | 4 families | `quantization`, `pruning`, `compression::{sharing, lowrank}` | the layers below; no other family |
//! | 5 training | `training`, `distillation`, `compression::deep`, `io`, `recipe`, `data` | the layers below and each other |
//! | 6 applications | `nn`, `calibration`, `plan`, `distributed`, `bin` | everything below and each other |
//!
//! Within a layer only the pairs the table allows; `compression` is a
//! folder of families, each its own module here. `distillation` and
//! `compression::deep` are training procedures (they run the training engine
//! on data), so they sit at the training layer.
//!
//! Exemptions, each deliberate: `lib.rs` (the facade and prelude);
//! `src/error.rs` may name the error types of the families it wraps (a path
//! whose last segment ends in `Error`); an item marked `#[deprecated]` (the
//! old public paths kept for one release); `#[cfg(test)]` modules (unit
//! tests may use anything); comments and doc links; and the
//! [`KNOWN`] list below, each with its reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Layer of each module path prefix; the longest matching prefix wins.
const LAYERS: &[(&str, u8)] = &[
    ("error", 0),
    ("parallel", 1),
    ("math", 1),
    ("matrix", 2),
    ("pass", 2),
    ("pipeline", 2),
    ("metrics", 2),
    ("kernels", 3),
    ("quantization", 4),
    ("pruning", 4),
    ("compression", 4),
    ("compression::sharing", 4),
    ("compression::lowrank", 4),
    ("compression::deep", 5),
    ("distillation", 5),
    ("training", 5),
    ("io", 5),
    ("recipe", 5),
    ("data", 5),
    ("nn", 6),
    ("calibration", 6),
    ("plan", 6),
    ("distributed", 6),
    ("bin", 6),
];

/// Layers whose modules may use each other (no cycles still).
const OPEN_LAYERS: &[u8] = &[2, 5, 6];

/// Same-layer uses allowed in the closed family layer: (from, to).
const FAMILY_PAIRS: &[(&str, &str)] = &[];

/// Known breaks owned by another branch, each with why; the lead removes an
/// entry when that branch lands. Matched on (file, target unit).
const KNOWN: &[(&str, &str, &str)] = &[];

/// The module unit a path names: the longest prefix in [`LAYERS`].
fn unit_of(path: &[String]) -> Option<(String, u8)> {
    let mut best: Option<(String, u8)> = None;
    for &(prefix, layer) in LAYERS {
        let parts: Vec<&str> = prefix.split("::").collect();
        if parts.len() <= path.len()
            && parts.iter().zip(path).all(|(a, b)| *a == b)
            && best
                .as_ref()
                .is_none_or(|(p, _)| p.split("::").count() < parts.len())
        {
            best = Some((prefix.to_string(), layer));
        }
    }
    best
}

/// The module path of a file under `src/` (`src/a/b/mod.rs` → `[a, b]`).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if parts.first().map(String::as_str) == Some("bin") {
        return vec!["bin".into()];
    }
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// One import that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    file: String,
    line: usize,
    path: String,
    rule: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}`: {}",
            self.file, self.line, self.path, self.rule
        )
    }
}

/// Source with comments, string and char literals blanked (same length and
/// line breaks), so that only code is searched.
fn code_only(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && b.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(if b[i] == '\n' { '\n' } else { ' ' });
                    i += 1;
                }
            }
        } else if c == '"' || (c == 'r' && matches!(b.get(i + 1), Some('"') | Some('#'))) {
            // Plain or raw string.
            let raw = c == 'r';
            let mut hashes = 0;
            if raw {
                out.push(' ');
                i += 1;
                while b.get(i) == Some(&'#') {
                    hashes += 1;
                    out.push(' ');
                    i += 1;
                }
                if b.get(i) != Some(&'"') {
                    continue;
                }
            }
            out.push(' ');
            i += 1;
            while i < b.len() {
                if !raw && b[i] == '\\' {
                    out.push_str("  ");
                    i += 2;
                    continue;
                }
                if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                    for _ in 0..=hashes {
                        out.push(' ');
                    }
                    i += 1 + hashes;
                    break;
                }
                out.push(if b[i] == '\n' { '\n' } else { ' ' });
                i += 1;
            }
        } else if c == '\'' && b.get(i + 2) == Some(&'\'') {
            // A char literal ('x'); lifetimes ('a) are left alone.
            out.push_str("   ");
            i += 3;
        } else if c == '\'' && b.get(i + 1) == Some(&'\\') {
            // An escaped char literal ('\n', '\u{..}').
            let end = (i + 2..b.len())
                .find(|&k| b[k] == '\'')
                .unwrap_or(b.len() - 1);
            for _ in i..=end {
                out.push(' ');
            }
            i = end + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Blanks the items the rules exempt: `#[cfg(test)]` modules and items
/// marked `#[deprecated]` (up to their `;` or their closing brace).
fn drop_exempt(code: &str) -> String {
    let mut b: Vec<char> = code.chars().collect();
    let text: String = b.iter().collect();
    let mut starts = Vec::new();
    for pat in ["#[cfg(test)]", "#[deprecated"] {
        let mut from = 0;
        while let Some(p) = text[from..].find(pat) {
            starts.push(text[..from + p].chars().count());
            from += p + pat.len();
        }
    }
    for s in starts {
        // The item ends at the first `;` outside braces, or at the brace
        // that closes the first `{` (a module or block).
        let mut depth = 0usize;
        let mut end = b.len();
        let mut j = s;
        // Skip the attribute itself.
        while j < b.len() && b[j] != ']' {
            j += 1;
        }
        while j < b.len() {
            match b[j] {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = j + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = j + 1;
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        for c in &mut b[s..end] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    }
    b.into_iter().collect()
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path that starts at the crate root, with its line: `crate::a::b`,
/// each item of `crate::{a::b, c}`, and `super::` chains resolved against
/// `module` that climb to the root.
fn crate_paths(code: &str, module: &[String]) -> Vec<(usize, Vec<String>)> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let line_at = |i: usize| chars[..i].iter().filter(|&&c| c == '\n').count() + 1;
    let mut i = 0;
    while i < chars.len() {
        let before_ok = i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == ':');
        let rest: String = chars[i..(i + 7).min(chars.len())].iter().collect();
        let (base, skip) = if before_ok && rest.starts_with("crate::") {
            (Vec::new(), 7)
        } else if before_ok && rest.starts_with("super::") {
            // The module a file's `super` names: the parent of its module
            // (a `mod.rs` or a file module is that module itself).
            let mut base: Vec<String> = module.to_vec();
            let mut j = i;
            while chars[j..].iter().take(7).collect::<String>() == "super::" {
                base.pop();
                j += 7;
            }
            (base, j - i)
        } else {
            i += 1;
            continue;
        };
        let line = line_at(i);
        let mut j = i + skip;
        for p in parse_tree(&chars, &mut j) {
            let mut full = base.clone();
            full.extend(p);
            out.push((line, full));
        }
        i = j.max(i + 1);
    }
    out
}

/// Parses `a::b::{c, d::e}` from `chars[*j..]` into the paths it names.
fn parse_tree(chars: &[char], j: &mut usize) -> Vec<Vec<String>> {
    let skip_ws = |j: &mut usize| {
        while *j < chars.len() && chars[*j].is_whitespace() {
            *j += 1;
        }
    };
    skip_ws(j);
    if chars.get(*j) == Some(&'{') {
        *j += 1;
        let mut all = Vec::new();
        loop {
            skip_ws(j);
            match chars.get(*j) {
                None => break,
                Some('}') => {
                    *j += 1;
                    break;
                }
                Some(',') => *j += 1,
                _ => {
                    let before = *j;
                    all.extend(parse_tree(chars, j));
                    if *j == before {
                        *j += 1;
                    }
                }
            }
        }
        return all;
    }
    let mut seg = String::new();
    while *j < chars.len() && is_ident(chars[*j]) {
        seg.push(chars[*j]);
        *j += 1;
    }
    if seg.is_empty() || seg == "self" {
        return vec![Vec::new()];
    }
    if chars.get(*j) == Some(&':') && chars.get(*j + 1) == Some(&':') {
        *j += 2;
        return parse_tree(chars, j)
            .into_iter()
            .map(|mut p| {
                p.insert(0, seg.clone());
                p
            })
            .collect();
    }
    vec![vec![seg]]
}

/// The violations in one file's source (`rel` is its path under `src/`),
/// and the top-level edges it adds.
pub fn check_source(rel: &Path, src: &str) -> (Vec<Violation>, BTreeSet<(String, String)>) {
    let module = module_of(rel);
    let file = format!("src/{}", rel.display());
    let mut violations = Vec::new();
    let mut edges = BTreeSet::new();
    if module.is_empty() {
        return (violations, edges); // lib.rs: the facade
    }
    let Some((from, from_layer)) = unit_of(&module) else {
        violations.push(Violation {
            file,
            line: 1,
            path: module.join("::"),
            rule: "this top-level module has no layer: add it to LAYERS and docs/architecture.md"
                .into(),
        });
        return (violations, edges);
    };
    let code = drop_exempt(&code_only(src));
    for (line, path) in crate_paths(&code, &module) {
        let Some((to, to_layer)) = unit_of(&path) else {
            continue; // a root re-export (`crate::Result`) or a macro
        };
        if to == from
            || to.starts_with(&format!("{from}::"))
            || from.starts_with(&format!("{to}::"))
        {
            continue;
        }
        if file == "src/error.rs" && path.last().is_some_and(|s| s.ends_with("Error")) {
            continue;
        }
        if KNOWN.iter().any(|&(f, t, _)| f == file && t == to) {
            continue;
        }
        let rule = if to_layer > from_layer {
            Some(format!(
                "`{from}` (layer {from_layer}) may not use `{to}` (layer {to_layer}): imports go down only"
            ))
        } else if to_layer == from_layer
            && !OPEN_LAYERS.contains(&from_layer)
            && !FAMILY_PAIRS.contains(&(from.as_str(), to.as_str()))
        {
            Some(format!(
                "`{from}` may not use `{to}`: modules of layer {from_layer} do not use each other"
            ))
        } else {
            None
        };
        // Cycles are checked between units: top-level modules, and each
        // folder of `compression` on its own (sharing sits below training,
        // deep above it).
        edges.insert((from.clone(), to.clone()));
        if let Some(rule) = rule {
            violations.push(Violation {
                file: file.clone(),
                line,
                path: path.join("::"),
                rule,
            });
        }
    }
    (violations, edges)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("src/ is readable") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A cycle among the top-level modules, if any (as a path a → … → a).
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut adj: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        adj.entry(a).or_default().push(b);
    }
    fn dfs<'a>(
        n: &'a str,
        adj: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(n, 1);
        stack.push(n);
        for &m in adj.get(n).into_iter().flatten() {
            match state.get(m).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|&s| s == m).unwrap_or(0);
                    let mut c: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
                    c.push(m.to_string());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = dfs(m, adj, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    let mut state = BTreeMap::new();
    let keys: Vec<&str> = adj.keys().copied().collect();
    for n in keys {
        if state.get(n).copied().unwrap_or(0) == 0 {
            if let Some(c) = dfs(n, &adj, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn every_import_follows_the_layering() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    assert!(
        files.len() > 50,
        "found only {} files under src/",
        files.len()
    );
    let mut all = Vec::new();
    let mut edges = BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&root).expect("under src/");
        let src = fs::read_to_string(f).expect("readable source");
        let (v, e) = check_source(rel, &src);
        all.extend(v);
        edges.extend(e);
    }
    let report: Vec<String> = all.iter().map(|v| v.to_string()).collect();
    assert!(
        all.is_empty(),
        "{} import(s) break the layering (docs/architecture.md):\n{}",
        all.len(),
        report.join("\n")
    );
    if let Some(c) = find_cycle(&edges) {
        panic!("import cycle between top-level modules: {}", c.join(" -> "));
    }
}

// The test of the test: a synthetic upward import must be caught, with the
// file, the line and the rule in the message.
#[test]
fn an_upward_import_is_caught() {
    let src = "//! The reference kernel.\n\nuse crate::error::Result;\nuse crate::kernels::dense_matmul;\n";
    let (v, _) = check_source(Path::new("matrix/reference.rs"), src);
    assert_eq!(v.len(), 1, "{v:?}");
    let msg = v[0].to_string();
    assert!(msg.starts_with("src/matrix/reference.rs:4:"), "{msg}");
    assert!(
        msg.contains("`matrix` (layer 2) may not use `kernels` (layer 3)"),
        "{msg}"
    );
}

#[test]
fn grouped_super_and_family_imports_are_caught() {
    // A grouped import that reaches a family from the core.
    let src = "use crate::{error::Result, pruning::Magnitude};\n";
    let (v, _) = check_source(Path::new("pipeline.rs"), src);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].path, "pruning::Magnitude");
    // `super::` chains out of a family into another family.
    let src = "\n\nfn f() { let _ = super::super::super::pruning::Magnitude::params(0.5); }\n";
    let (v, _) = check_source(Path::new("quantization/kernels/x.rs"), src);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].line, 3);
    assert!(v[0].rule.contains("do not use each other"), "{}", v[0].rule);
    // The leaf imports nothing but `error`.
    let (v, _) = check_source(
        Path::new("parallel/tasks.rs"),
        "use crate::pipeline::Pipeline;\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
}

#[test]
fn exemptions_hold_and_stay_narrow() {
    // Comments, strings, deprecated re-exports and unit tests are exempt.
    let src = r#"
//! See [`crate::kernels`].
/// Moved.
#[deprecated(note = "moved to crate::kernels")]
pub use crate::kernels::dense_matmul;
const S: &str = "crate::kernels::x";
#[cfg(test)]
mod tests {
    use crate::kernels::Tier;
}
"#;
    let (v, _) = check_source(Path::new("parallel/mod.rs"), src);
    assert!(v.is_empty(), "{v:?}");
    // The same import outside those is caught.
    let (v, _) = check_source(
        Path::new("parallel/mod.rs"),
        "pub use crate::kernels::Tier;\n",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    // The crate error may name family errors, not other family items.
    let (v, _) = check_source(Path::new("error.rs"), "use crate::pruning::PruningError;\n");
    assert!(v.is_empty(), "{v:?}");
    let (v, _) = check_source(Path::new("error.rs"), "use crate::pruning::Magnitude;\n");
    assert_eq!(v.len(), 1, "{v:?}");
    // A top-level module without a layer is reported.
    let (v, _) = check_source(Path::new("newthing/mod.rs"), "");
    assert_eq!(v.len(), 1, "{v:?}");
}

#[test]
fn cycles_are_found() {
    let e: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let c = find_cycle(&e).expect("a cycle");
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4);
    let e: BTreeSet<(String, String)> = [("a", "b"), ("b", "c"), ("a", "c")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert!(find_cycle(&e).is_none());
}

// The old public paths of everything this layering moved still resolve (for
// one release, as deprecated re-exports) and name the same items.
#[test]
#[allow(deprecated)]
fn old_public_paths_still_resolve() {
    use ndarray::array;
    use squish::matrix::CompressedMatrix;
    use squish::parallel::Sequential;

    let w = array![[1.0f32, 0.0, 2.0], [0.0, 0.0, 3.0]];
    let m = CompressedMatrix::csr_from_mask(w.view(), w.mapv(|v| v != 0.0).view()).unwrap();
    let x = array![[1.0f32, 1.0, 1.0]];
    let want = m.matmul_reference(x.view()).unwrap();
    let old = squish::pruning::kernels::sparse_matmul(
        &m,
        x.view(),
        &Sequential,
        squish::pruning::kernels::KernelPath::Portable,
    );
    assert_eq!(old.unwrap(), want);
    let old = squish::pruning::kernels::dense_matmul(
        w.view(),
        x.view(),
        &Sequential,
        squish::quantization::kernels::Isa::Portable,
    );
    assert_eq!(old.unwrap(), want);
    assert_eq!(
        squish::matrix::kernels::matmul(&m, x.view(), &Sequential),
        want
    );
    assert_eq!(
        squish::parallel::dense_matmul(w.view(), x.view(), &Sequential).unwrap(),
        want
    );
    let split =
        squish::parallel::RowSplit::from_dense(w.view(), 2, &|_r, b| Ok(b.to_owned()), &Sequential)
            .unwrap();
    assert_eq!(
        squish::matrix::LinOp::apply(&split, x.view(), &Sequential).unwrap(),
        want
    );
    assert_eq!(squish::parallel::pipeline_working_set(2, 3, 1), 6 * 17);
    let _: squish::pass::Prune<squish::pruning::Magnitude> =
        squish::pruning::Prune(squish::pruning::Magnitude::params(0.5).check().unwrap());
    let _ = squish::compression::lowrank::kernel::GEMV_MAX_BATCH;
    // `matmul_block` takes `impl AsArray`: name it through a call.
    let _ = |v: &squish::matrix::Values, x: ndarray::ArrayView2<f32>| {
        squish::quantization::kernels::matmul_block(
            v,
            x,
            &Sequential,
            squish::quantization::kernels::Isa::Portable,
        )
    };
}

/// The library's own dependencies (`[dependencies]`, per-target ones
/// included) hold none of the command line's crates, which live in
/// `squish-cli/` (issue #20: every library user built clap, indicatif and
/// plotters), and its default features need nothing but cargo.
#[test]
fn the_library_does_not_depend_on_the_command_lines_crates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let mut deps: Vec<&toml::Table> = vec![manifest["dependencies"].as_table().unwrap()];
    if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
        for t in targets.values() {
            deps.extend(t.get("dependencies").and_then(|d| d.as_table()));
        }
    }
    for cli_only in ["clap", "indicatif", "plotters"] {
        assert!(
            deps.iter().all(|d| !d.contains_key(cli_only)),
            "the library depends on {cli_only}"
        );
    }
    let default = manifest["features"]["default"].as_array().unwrap();
    assert!(default.is_empty(), "default features {default:?}");
    let cli: toml::Table = std::fs::read_to_string(root.join("squish-cli/Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(cli["dependencies"].as_table().unwrap().contains_key("clap"));
}
