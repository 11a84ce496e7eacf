//! `branches:` patterns, with GitHub's deployment-branch semantics
//! (Ruby's `File.fnmatch` with `FNM_PATHNAME`): `*` matches any run of
//! characters but `/`, `**` matches across `/`, `?` one character but `/`,
//! `[abc]`/`[a-z]`/`[!a]` one of a set; anything else matches itself.

use std::collections::HashSet;

/// Is `pattern` one deployhost can match? Says what is wrong when not.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("a branch pattern may not be empty".into());
    }
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '[' && !chars.by_ref().any(|c| c == ']') {
            return Err(format!("`{pattern}`: `[` without a closing `]`"));
        }
    }
    Ok(())
}

/// Does `name` (a branch or tag name, `release/1.2`) match `pattern`?
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob(&p, &n, &mut HashSet::new())
}

/// `p` against `n`. Both are suffixes of the originals, so their lengths
/// name a state: `failed` remembers the states that did not match, which
/// keeps patterns with many `*` linear in practice instead of exponential
/// in the (CI-controlled) branch name.
fn glob(p: &[char], n: &[char], failed: &mut HashSet<(usize, usize)>) -> bool {
    if failed.contains(&(p.len(), n.len())) {
        return false;
    }
    let hit = glob_step(p, n, failed);
    if !hit {
        failed.insert((p.len(), n.len()));
    }
    hit
}

fn glob_step(p: &[char], n: &[char], failed: &mut HashSet<(usize, usize)>) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') if p.get(1) == Some(&'*') => {
            let rest = &p[2..];
            // `**/` also matches no folder at all.
            if rest.first() == Some(&'/') && glob(&rest[1..], n, failed) {
                return true;
            }
            (0..=n.len()).any(|i| glob(rest, &n[i..], failed))
        }
        Some('*') => {
            let rest = &p[1..];
            for i in 0..=n.len() {
                if glob(rest, &n[i..], failed) {
                    return true;
                }
                if n.get(i) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Some('?') => n.first().is_some_and(|c| *c != '/') && glob(&p[1..], &n[1..], failed),
        Some('[') => {
            let Some(end) = p.iter().position(|c| *c == ']') else { return false };
            let Some(&c) = n.first() else { return false };
            let set = &p[1..end];
            let (negate, set) = match set.first() {
                Some('!' | '^') => (true, &set[1..]),
                _ => (false, set),
            };
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && set[i + 1] == '-' {
                    hit |= (set[i]..=set[i + 2]).contains(&c);
                    i += 3;
                } else {
                    hit |= set[i] == c;
                    i += 1;
                }
            }
            c != '/' && hit != negate && glob(&p[end + 1..], &n[1..], failed)
        }
        Some(c) => n.first() == Some(c) && glob(&p[1..], &n[1..], failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn githubs_branch_patterns() {
        assert!(matches("main", "main"));
        assert!(!matches("main", "main2"));
        assert!(matches("release/*", "release/1.2"));
        assert!(!matches("release/*", "release/1.2/hotfix"), "`*` stops at `/`");
        assert!(matches("release/**", "release/1.2/hotfix"), "`**` crosses `/`");
        assert!(matches("**/hotfix", "release/1.2/hotfix"));
        assert!(matches("**/hotfix", "hotfix"));
        assert!(!matches("*", "feature/x"));
        assert!(matches("v[0-9].?", "v1.x"));
        assert!(!matches("v[!0-9]*", "v1"));
        assert!(!matches("release/*", "release"));
        assert!(check_pattern("").is_err());
        assert!(check_pattern("v[0-9").is_err());
    }

    #[test]
    fn many_stars_against_a_long_name_finish() {
        // Without remembering failed states this takes ~500^10 steps.
        let pattern = "**a**a**a**a**a**a**a**a**a**a**b";
        let name = "a".repeat(500);
        assert!(!matches(pattern, &name));
        assert!(matches(pattern, &format!("{name}b")));
        assert!(!matches("*a*a*a*a*a*a*a*a*a*b", &"a".repeat(500)));
    }
}
