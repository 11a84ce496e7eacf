//! The Supabase CLI's seed globs: Go's `fs.Glob` and `path.Match`, so
//! `sql_paths` select the same files in the same order. `*` matches any
//! run of characters in one name (hidden files too), `?` one character,
//! `[a-z]`/`[^…]` a class, `\` escapes; no `**`. A pattern without
//! wildcards names a path that must exist.

/// The folder listing the glob needs; `None` when `dir` is no folder.
pub trait Fs {
    /// Entry names of `dir` ("" is the root) with whether each is a folder.
    fn list(&self, dir: &str) -> Option<Vec<(String, bool)>>;
    fn exists(&self, path: &str) -> bool;
}

/// Go's `path.Clean` for a relative path: `.` and empty parts dropped,
/// `..` folded; a `..` left at the start is kept.
pub fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    parts.join("/")
}

/// `path` relative to `base` (both clean, relative), with `..` as needed.
pub fn relative(base: &str, path: &str) -> String {
    let b: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    let p: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let common = b.iter().zip(&p).take_while(|(x, y)| x == y).count();
    let mut out: Vec<&str> = vec![".."; b.len() - common];
    out.extend(&p[common..]);
    out.join("/")
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

/// Go's `fs.Glob`: the matching paths (files and folders) in name order
/// per folder, or an error for a malformed pattern.
pub fn glob(fs: &dyn Fs, pattern: &str) -> Result<Vec<String>, String> {
    validate(pattern)?;
    if !has_meta(pattern) {
        return Ok(if fs.exists(pattern) { vec![pattern.to_string()] } else { Vec::new() });
    }
    let (dir, file) = match pattern.rfind('/') {
        Some(i) => (&pattern[..i], &pattern[i + 1..]),
        None => ("", pattern),
    };
    let dirs = if has_meta(dir) { glob(fs, dir)? } else { vec![dir.to_string()] };
    let mut out = Vec::new();
    for d in dirs {
        let Some(mut entries) = fs.list(&d) else { continue };
        entries.sort();
        for (name, _) in entries {
            if matches(file, &name)? {
                out.push(if d.is_empty() { name } else { format!("{d}/{name}") });
            }
        }
    }
    Ok(out)
}

/// Refuses what Go's `path.Match` calls a bad pattern: an unclosed or
/// empty class, a bad range, a trailing backslash.
fn validate(pattern: &str) -> Result<(), String> {
    let bad = || Err(format!("malformed glob pattern `{pattern}`"));
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                if i + 1 >= chars.len() {
                    return bad();
                }
                i += 2;
            }
            '[' => match class(&chars, i + 1, None) {
                Some((_, next)) => i = next,
                None => return bad(),
            },
            _ => i += 1,
        }
    }
    Ok(())
}

/// Reads the class whose body starts at `i` (after `[`); with `c`, whether
/// it matches `c`. Returns (matched, index after `]`); `None` if malformed.
fn class(p: &[char], mut i: usize, c: Option<char>) -> Option<(bool, usize)> {
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut ranges = 0;
    loop {
        if p.get(i) == Some(&']') && ranges > 0 {
            i += 1;
            break;
        }
        let (lo, next) = class_char(p, i)?;
        i = next;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            let (h, next) = class_char(p, i + 1)?;
            hi = h;
            i = next;
        }
        if lo > hi {
            return None;
        }
        if c.is_some_and(|c| lo <= c && c <= hi) {
            matched = true;
        }
        ranges += 1;
    }
    Some((matched != negated, i))
}

fn class_char(p: &[char], i: usize) -> Option<(char, usize)> {
    match *p.get(i)? {
        '-' | ']' => None,
        '\\' => Some((*p.get(i + 1)?, i + 2)),
        c => Some((c, i + 1)),
    }
}

/// Go's `path.Match` for one name (no `/` in it).
pub fn matches(pattern: &str, name: &str) -> Result<bool, String> {
    validate(pattern)?;
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    Ok(match_at(&p, &n))
}

fn match_at(p: &[char], n: &[char]) -> bool {
    let Some(&first) = p.first() else { return n.is_empty() };
    match first {
        '*' => (0..=n.len()).take_while(|&k| k == 0 || n[k - 1] != '/').any(|k| match_at(&p[1..], &n[k..])),
        '?' => n.first().is_some_and(|&c| c != '/') && match_at(&p[1..], &n[1..]),
        '[' => match (n.first(), class(p, 1, n.first().copied())) {
            (Some(&c), Some((true, next))) if c != '/' => match_at(&p[next..], &n[1..]),
            _ => false,
        },
        '\\' => n.first() == p.get(1) && match_at(&p[2..], &n[1..]),
        c => n.first() == Some(&c) && match_at(&p[1..], &n[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Tree(BTreeMap<String, Vec<(String, bool)>>);

    impl Tree {
        fn new(files: &[&str]) -> Tree {
            let mut dirs: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
            for file in files {
                let parts: Vec<&str> = file.split('/').collect();
                for i in 0..parts.len() {
                    let dir = parts[..i].join("/");
                    let entry = (parts[i].to_string(), i + 1 < parts.len());
                    let list = dirs.entry(dir).or_default();
                    if !list.contains(&entry) {
                        list.push(entry);
                    }
                }
            }
            Tree(dirs)
        }
    }

    impl Fs for Tree {
        fn list(&self, dir: &str) -> Option<Vec<(String, bool)>> {
            self.0.get(dir).cloned()
        }
        fn exists(&self, path: &str) -> bool {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            self.0.get(dir).is_some_and(|l| l.iter().any(|(n, _)| n == name))
        }
    }

    #[test]
    fn matches_like_go_path_match() {
        let yes = [("*.sql", "seed.sql"), ("*", ".hidden"), ("s?ed.sql", "seed.sql"), ("[0-9]*_*.sql", "01_users.sql")];
        for (p, n) in yes {
            assert!(matches(p, n).unwrap(), "{p} {n}");
        }
        let no = [("*.sql", "seed.sql.bak"), ("[^0-9]*", "1.sql"), ("seed.sql", "Seed.sql"), ("\\*.sql", "a.sql")];
        for (p, n) in no {
            assert!(!matches(p, n).unwrap(), "{p} {n}");
        }
        assert!(matches("\\*.sql", "*.sql").unwrap());
        for bad in ["[", "[]", "[a-", "[z-a]", "x\\"] {
            assert!(matches(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn globs_in_name_order_per_folder() {
        let fs = Tree::new(&[
            "supabase/seed.sql",
            "supabase/seeds/02_posts.sql",
            "supabase/seeds/01_users.sql",
            "supabase/seeds/10_big.sql",
            "supabase/seeds/notes.txt",
            "supabase/seeds/more/03_x.sql",
        ]);
        assert_eq!(
            glob(&fs, "supabase/seeds/*.sql").unwrap(),
            ["supabase/seeds/01_users.sql", "supabase/seeds/02_posts.sql", "supabase/seeds/10_big.sql"]
        );
        assert_eq!(glob(&fs, "supabase/*/*/*.sql").unwrap(), ["supabase/seeds/more/03_x.sql"]);
        assert_eq!(glob(&fs, "supabase/seed.sql").unwrap(), ["supabase/seed.sql"]);
        assert!(glob(&fs, "supabase/missing.sql").unwrap().is_empty());
        assert!(glob(&fs, "supabase/nowhere/*.sql").unwrap().is_empty());
        assert!(glob(&fs, "supabase/[").is_err());
    }

    #[test]
    fn clean_and_relative_like_go() {
        assert_eq!(clean("supabase/./seed.sql"), "supabase/seed.sql");
        assert_eq!(clean("supabase/../seeds//a.sql"), "seeds/a.sql");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(relative("supabase", "supabase/seeds/a.sql"), "seeds/a.sql");
        assert_eq!(relative("app/supabase", "app/seeds/a.sql"), "../seeds/a.sql");
        assert_eq!(relative("", "seed.sql"), "seed.sql");
    }
}
