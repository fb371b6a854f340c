//! `--include` / `--exclude` filters with the semantics `aws s3 sync` users know: everything is
//! included by default, filters apply in order and a later match overrides an earlier one,
//! patterns match the key relative to the prefix, `*` matches any run of characters (including
//! `/`), `?` one character, `[abc]` / `[!abc]` one of (or none of) a set.

use serde::{Deserialize, Serialize};

/// One filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// Keys matching the pattern are included.
    Include(String),
    /// Keys matching the pattern are excluded.
    Exclude(String),
}

/// Whether a key relative to the prefix passes the filters.
pub fn passes(filters: &[Filter], relative_key: &str) -> bool {
    let mut included = true;
    for filter in filters {
        match filter {
            Filter::Include(p) if glob(p, relative_key) => included = true,
            Filter::Exclude(p) if glob(p, relative_key) => included = false,
            _ => {}
        }
    }
    included
}

/// Shell-style pattern match over the whole text.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point for the last `*`, linear in practice.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class(&p, pi, t[ti]) {
                        if matched {
                            pi = next;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`; `None` if the class is unclosed.
fn class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negated = p.get(i) == Some(&'!');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() && (p[i] != ']' || first) {
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            matched |= p[i] <= c && c <= p[i + 2];
            i += 3;
        } else {
            matched |= p[i] == c;
            i += 1;
        }
        first = false;
    }
    (i < p.len()).then_some((matched != negated, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_the_cli() {
        assert!(glob("*", "a/b/c.txt"));
        assert!(glob("*.jpg", "dir/photo.jpg"));
        assert!(!glob("*.jpg", "photo.jpeg"));
        assert!(glob("logs/*", "logs/2026/01/x"));
        assert!(glob("file?.txt", "file1.txt"));
        assert!(!glob("file?.txt", "file10.txt"));
        assert!(glob("[abc]*", "b-side"));
        assert!(!glob("[!abc]*", "b-side"));
        assert!(glob("[0-9][0-9].log", "42.log"));
        assert!(glob("a*b*c", "a-x-b-y-c"));
        assert!(!glob("a*b*c", "a-x-c"));
        assert!(glob("café/*", "café/日本"));
        assert!(glob("[", "["));
    }

    #[test]
    fn later_filters_win() {
        let only_jpg = [Filter::Exclude("*".into()), Filter::Include("*.jpg".into())];
        assert!(passes(&only_jpg, "x/y.jpg"));
        assert!(!passes(&only_jpg, "x/y.png"));
        let no_tmp = [Filter::Exclude("tmp/*".into())];
        assert!(passes(&no_tmp, "data/tmp/x"));
        assert!(!passes(&no_tmp, "tmp/x"));
        assert!(passes(&[], "anything"));
    }
}
