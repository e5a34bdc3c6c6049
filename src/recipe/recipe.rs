//! [`Recipe`]: layer-name patterns mapped to pipelines, first match wins.

use std::path::Path;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use toml::Spanned;

use super::{MethodSpec, RecipeError};
use crate::error::Result;
use crate::pipeline::Pipeline;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    #[serde(default)]
    rule: Vec<RuleFile>,
    default: Option<DefaultFile>,
    recover: Option<Spanned<super::RecoverSpec>>,
    calibration: Option<Spanned<super::CalibrationSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    pattern: Option<Spanned<String>>,
    regex: Option<Spanned<String>>,
    pipeline: Spanned<Vec<Spanned<toml::Value>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultFile {
    pipeline: Spanned<Vec<Spanned<toml::Value>>>,
}

#[derive(Clone, Debug)]
enum Matcher {
    Glob(GlobMatcher),
    Regex(regex::Regex),
}

/// One rule: a pattern and the methods applied to the layers it selects.
#[derive(Clone, Debug)]
pub struct Rule {
    pattern: String,
    matcher: Matcher,
    line: usize,
    /// The command-line flag the rule comes from, for rules not read from a file.
    flag: Option<&'static str>,
    methods: Vec<MethodSpec>,
}

impl Rule {
    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// 1-based line of the pattern in the recipe.
    pub fn line(&self) -> usize {
        self.line
    }

    /// The methods, in order.
    pub fn methods(&self) -> &[MethodSpec] {
        &self.methods
    }

    /// True when the rule selects `name` (globs and regexes match the whole name).
    pub fn matches(&self, name: &str) -> bool {
        match &self.matcher {
            Matcher::Glob(g) => g.is_match(name),
            Matcher::Regex(r) => r.is_match(name),
        }
    }
}

/// What a recipe does with one weight matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Rule number `i` (0-based, file order) matched first.
    Rule(usize),
    /// No rule matched; the `[default]` pipeline applies.
    Default,
    /// No rule matched and there is no default: the tensor is kept as it is.
    Keep,
}

/// A compression recipe: which pipeline each layer gets.
///
/// ```
/// use squish::recipe::{Choice, Recipe};
/// let r = Recipe::from_toml(r#"
/// [[rule]]
/// pattern = "*.attn.*"
/// pipeline = [{ method = "magnitude", sparsity = 0.5 }, { method = "int8" }]
///
/// [[rule]]
/// regex = "^mlp\\.[0-9]+\\.weight$"
/// pipeline = [{ method = "int4", granularity = "per-group", group_size = 64 }]
///
/// [default]
/// pipeline = [{ method = "int8", granularity = "per-row" }]
/// "#)?;
/// assert_eq!(r.choose("h.0.attn.q.weight"), Choice::Rule(0));
/// assert_eq!(r.choose("mlp.3.weight"), Choice::Rule(1));
/// assert_eq!(r.choose("embed.weight"), Choice::Default);
/// assert_eq!(r.rules()[1].line(), 7);
/// # Ok::<(), squish::SquishError>(())
/// ```
///
/// In the TOML, `[[rule]]` tables are tried in order and the first whose
/// `pattern` (a glob: `*` matches any run of characters, dots included) or
/// `regex` matches the layer name wins; `[default]` applies to the layers no
/// rule takes (without it they are kept as they are); an empty `pipeline`
/// keeps a layer as it is. Methods:
/// - `magnitude` (`sparsity`);
/// - `nm` (`n`, `m`): keep n of every m consecutive inputs;
/// - `structured` (`sparsity`, `p` = 2, `axis` = `rows` | `cols`);
/// - `int8` and `int4` (`granularity` = `per-tensor` | `per-row` |
///   `per-group` with `group_size`, `symmetric`, `calibration` = `"minmax"` |
///   `{ percentile = 99.9 }` | `"mse"`);
/// - `binary`, `ternary`;
/// - `lowrank` (one of `rank`, `energy`, `rel_error`, `ratio`, `bytes`;
///   `randomized = true` with `oversampling`, `power_iters`, `seed`);
/// - `kmeans` (`k` or `bits`; `init` = `linear` | `density` | `kmeans++`
///   with `seed`, `max_iter`, or `optimal = true`; `per_row`);
/// - data-aware, reading each layer's calibration statistics:
///   `gptq` (`bits` = 3 | 4 | 8, `granularity` = `per-row` | `per-group`
///   with `group_size`, `symmetric`, `calibration` = `"minmax"` | `"mse"`,
///   `damp`, `block`, `act_order`, `static_groups`), `sparsegpt`
///   (`sparsity` or `n` and `m`; `damp`, `block`), `wanda` (`sparsity`
///   or `n` and `m`) and `awq` (the quantizer keys of `gptq`, `grid`, and
///   `gptq = true` with GPTQ's `damp`, `block`, `act_order`,
///   `static_groups`; `search` = `"rtn"` | `"gptq"`; the layer gets a stored
///   `{layer}.input_scale`). Where the calibration data comes from is the
///   `[calibration]` section ([`CalibrationSection`](super::CalibrationSection):
///   `file`, `samples`, `seed`, `max_tokens`, `mode`); applying a recipe
///   with a data-aware method and no data is a typed error
///   ([`RecipeError::NeedsCalibration`]).
///
/// ```
/// use squish::recipe::Recipe;
/// let r = Recipe::from_toml(r#"
/// [calibration]
/// samples = 64
/// seed = 7
///
/// [[rule]]
/// pattern = "*.attention.*"
/// pipeline = [{ method = "gptq", bits = 4, granularity = "per-group", group_size = 128 }]
///
/// [default]
/// pipeline = [{ method = "sparsegpt", n = 2, m = 4 }]
/// "#)?;
/// assert!(r.needs_calibration());
/// assert_eq!(r.calibration().unwrap().samples, Some(64));
/// # Ok::<(), squish::SquishError>(())
/// ```
///
/// Unknown keys and out-of-range values are errors that name their line.
#[derive(Clone, Debug, Default)]
pub struct Recipe {
    rules: Vec<Rule>,
    default: Option<Vec<MethodSpec>>,
    recover: Option<super::RecoverSpec>,
    calibration: Option<super::CalibrationSection>,
}

/// 1-based line of byte `offset` in `src`.
fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn methods(
    src: &str,
    pipeline: Spanned<Vec<Spanned<toml::Value>>>,
) -> std::result::Result<Vec<MethodSpec>, RecipeError> {
    pipeline
        .into_inner()
        .into_iter()
        .map(|m| {
            // Each method is parsed on its own so its errors carry its line.
            let line = line_of(src, m.span().start);
            let m = MethodSpec::deserialize(m.into_inner()).map_err(|e| RecipeError::Syntax {
                line,
                message: e.message().trim().to_string(),
            })?;
            m.check().map_err(|e| RecipeError::BadValue {
                line,
                message: e.to_string(),
            })?;
            Ok(m)
        })
        .collect()
}

impl Recipe {
    /// A recipe with no rules and `methods` as the default for every layer
    /// (what the CLI's quick flags build).
    pub fn uniform(methods: Vec<MethodSpec>) -> Result<Self> {
        for m in &methods {
            m.check()?;
        }
        Ok(Recipe {
            rules: Vec::new(),
            default: Some(methods),
            recover: None,
            calibration: None,
        })
    }

    /// `methods` for the weight matrices whose names match a glob of
    /// `include` (all of them when it is empty) and no glob of `exclude`;
    /// the others are kept as they are. What the CLI's quick flags with
    /// `--include`/`--exclude` build. Every pattern must select a matrix.
    ///
    /// ```
    /// use squish::recipe::{Choice, MethodSpec, Recipe};
    /// let r = Recipe::selected(vec![MethodSpec::Binary {}], &["enc.*"], &["*.embed*"])?;
    /// assert_eq!(r.choose("enc.0.weight"), Choice::Rule(1));
    /// assert!(r.methods(r.choose("enc.embed.weight")).is_empty()); // excluded
    /// assert_eq!(r.choose("pooler.weight"), Choice::Keep); // not included
    /// # Ok::<(), squish::SquishError>(())
    /// ```
    pub fn selected(methods: Vec<MethodSpec>, include: &[&str], exclude: &[&str]) -> Result<Self> {
        for m in &methods {
            m.check()?;
        }
        let rule = |flag: &'static str, p: &str, methods: Vec<MethodSpec>| {
            let g = Glob::new(p).map_err(|e| {
                crate::SquishError::invalid(flag, p, format!("not a valid glob: {}", e.kind()))
            })?;
            Ok::<_, crate::SquishError>(Rule {
                pattern: p.to_string(),
                matcher: Matcher::Glob(g.compile_matcher()),
                line: 0,
                flag: Some(flag),
                methods,
            })
        };
        // Exclusions first: the first matching rule wins.
        let mut rules = Vec::with_capacity(include.len() + exclude.len());
        for p in exclude {
            rules.push(rule("--exclude", p, Vec::new())?);
        }
        for p in include {
            rules.push(rule("--include", p, methods.clone())?);
        }
        Ok(Recipe {
            rules,
            default: include.is_empty().then_some(methods),
            recover: None,
            calibration: None,
        })
    }

    /// Parses and checks a TOML recipe.
    pub fn from_toml(src: &str) -> Result<Self> {
        Ok(Self::parse(src)?)
    }

    /// Reads and parses a TOML recipe file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let src = std::fs::read_to_string(path).map_err(|source| RecipeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&src)
    }

    fn parse(src: &str) -> std::result::Result<Self, RecipeError> {
        let file: RecipeFile = toml::from_str(src).map_err(|e| RecipeError::Syntax {
            line: e.span().map_or(0, |s| line_of(src, s.start)),
            message: e.message().trim().to_string(),
        })?;
        let mut rules = Vec::with_capacity(file.rule.len());
        for r in file.rule {
            let (pattern, matcher) = match (r.pattern, r.regex) {
                (Some(p), None) => {
                    let line = line_of(src, p.span().start);
                    let g = Glob::new(p.get_ref()).map_err(|e| RecipeError::BadPattern {
                        line,
                        pattern: p.get_ref().clone(),
                        message: e.kind().to_string(),
                    })?;
                    (p, Matcher::Glob(g.compile_matcher()))
                }
                (None, Some(p)) => {
                    let line = line_of(src, p.span().start);
                    let anchored = format!("^(?:{})$", p.get_ref());
                    let re = regex::Regex::new(&anchored).map_err(|e| RecipeError::BadPattern {
                        line,
                        pattern: p.get_ref().clone(),
                        message: e.to_string(),
                    })?;
                    (p, Matcher::Regex(re))
                }
                (p, q) => {
                    return Err(RecipeError::Syntax {
                        line: line_of(src, r.pipeline.span().start),
                        message: if p.is_some() && q.is_some() {
                            "a rule has either `pattern` or `regex`, not both".into()
                        } else {
                            "a rule needs `pattern = \"glob\"` or `regex = \"...\"`".into()
                        },
                    })
                }
            };
            let line = line_of(src, pattern.span().start);
            rules.push(Rule {
                pattern: pattern.into_inner(),
                matcher,
                line,
                flag: None,
                methods: methods(src, r.pipeline)?,
            });
        }
        let default = file.default.map(|d| methods(src, d.pipeline)).transpose()?;
        let recover = match file.recover {
            Some(r) => {
                let line = line_of(src, r.span().start);
                let r = r.into_inner();
                r.build().map_err(|e| RecipeError::BadValue {
                    line,
                    message: e.to_string(),
                })?;
                Some(r)
            }
            None => None,
        };
        let calibration = match file.calibration {
            Some(c) => {
                let line = line_of(src, c.span().start);
                let c = c.into_inner();
                c.check().map_err(|e| RecipeError::BadValue {
                    line,
                    message: e.to_string(),
                })?;
                Some(c)
            }
            None => None,
        };
        Ok(Recipe {
            rules,
            default,
            recover,
            calibration,
        })
    }

    /// The `[calibration]` section, if any.
    pub fn calibration(&self) -> Option<&super::CalibrationSection> {
        self.calibration.as_ref()
    }

    /// Sets the `[calibration]` section.
    pub fn set_calibration(&mut self, c: super::CalibrationSection) -> Result<()> {
        c.check()?;
        self.calibration = Some(c);
        Ok(())
    }

    /// Whether any rule or the default uses a data-aware method.
    pub fn needs_calibration(&self) -> bool {
        self.rules
            .iter()
            .flat_map(|r| &r.methods)
            .chain(self.default.iter().flatten())
            .any(MethodSpec::needs_data)
    }

    /// Where a choice comes from, for error messages: `recipe line N`,
    /// `--include GLOB`, `[default]`.
    pub fn origin(&self, c: Choice) -> String {
        match c {
            Choice::Rule(i) => match self.rules[i].flag {
                Some(flag) => format!("{flag} {}", self.rules[i].pattern),
                None => format!("recipe line {}", self.rules[i].line),
            },
            Choice::Default => "[default]".into(),
            Choice::Keep => "kept".into(),
        }
    }

    /// The `[recover]` section: teacher-guided fine-tuning after compression,
    /// for callers that hold the data and the dense model.
    pub fn recover(&self) -> Option<&super::RecoverSpec> {
        self.recover.as_ref()
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The default methods, if the recipe has a `[default]`.
    pub fn default_methods(&self) -> Option<&[MethodSpec]> {
        self.default.as_deref()
    }

    /// What happens to the layer `name`: the first matching rule, else the
    /// default, else nothing.
    pub fn choose(&self, name: &str) -> Choice {
        match self.rules.iter().position(|r| r.matches(name)) {
            Some(i) => Choice::Rule(i),
            None if self.default.is_some() => Choice::Default,
            None => Choice::Keep,
        }
    }

    /// The methods of a choice (empty for [`Choice::Keep`]).
    pub fn methods(&self, c: Choice) -> &[MethodSpec] {
        match c {
            Choice::Rule(i) => &self.rules[i].methods,
            Choice::Default => self.default.as_deref().unwrap_or(&[]),
            Choice::Keep => &[],
        }
    }

    /// The pipeline of a choice.
    pub fn pipeline(&self, c: Choice) -> Result<Pipeline> {
        MethodSpec::pipeline(self.methods(c))
    }

    /// Chooses for every weight matrix in `matrices` and checks that every
    /// rule selects at least one of them; `others` are the model's remaining
    /// tensor names (vectors, integer tensors), named in the error when a
    /// pattern selects only those.
    pub fn plan(&self, matrices: &[&str], others: &[&str]) -> Result<Vec<Choice>> {
        let choices: Vec<Choice> = matrices.iter().map(|n| self.choose(n)).collect();
        for (i, r) in self.rules.iter().enumerate() {
            if choices.contains(&Choice::Rule(i)) {
                continue;
            }
            let hits: Vec<&str> = matrices.iter().copied().filter(|n| r.matches(n)).collect();
            let detail = if let Some(first) = hits.first() {
                let Choice::Rule(j) = self.choose(first) else {
                    unreachable!("a matching rule exists")
                };
                match self.rules[j].flag {
                    Some(flag) => format!(
                        "selects only layers that `{flag} {}` already takes (e.g. `{first}`)",
                        self.rules[j].pattern
                    ),
                    None => format!(
                        "selects only layers that the earlier rule at line {} already takes (e.g. `{first}`)",
                        self.rules[j].line
                    ),
                }
            } else if let Some(o) = others.iter().find(|n| r.matches(n)) {
                format!(
                    "matches no weight matrix, only tensors that are never compressed (e.g. `{o}`)"
                )
            } else {
                format!(
                    "matches no tensor of the model ({} weight matrices, e.g. `{}`)",
                    matrices.len(),
                    matrices.first().copied().unwrap_or("none")
                )
            };
            if let Some(flag) = r.flag {
                return Err(RecipeError::UnmatchedFlag {
                    flag,
                    pattern: r.pattern.clone(),
                    detail,
                }
                .into());
            }
            return Err(RecipeError::Unmatched {
                line: r.line,
                pattern: r.pattern.clone(),
                detail,
            }
            .into());
        }
        Ok(choices)
    }
}
