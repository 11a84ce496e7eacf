//! `branches:` patterns, with GitHub's deployment-branch semantics
//! (Ruby's `File.fnmatch` with `FNM_PATHNAME`): `*` matches any run of
//! characters but `/`, `**` matches across `/`, `?` one character but `/`,
//! `[abc]`/`[a-z]`/`[!a]` one of a set; anything else matches itself.

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
    glob(&p, &n)
}

fn glob(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') if p.get(1) == Some(&'*') => {
            let rest = &p[2..];
            // `**/` also matches no folder at all.
            if rest.first() == Some(&'/') && glob(&rest[1..], n) {
                return true;
            }
            (0..=n.len()).any(|i| glob(rest, &n[i..]))
        }
        Some('*') => {
            let rest = &p[1..];
            for i in 0..=n.len() {
                if glob(rest, &n[i..]) {
                    return true;
                }
                if n.get(i) == Some(&'/') {
                    break;
                }
            }
            false
        }
        Some('?') => n.first().is_some_and(|c| *c != '/') && glob(&p[1..], &n[1..]),
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
            c != '/' && hit != negate && glob(&p[end + 1..], &n[1..])
        }
        Some(c) => n.first() == Some(c) && glob(&p[1..], &n[1..]),
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
}
