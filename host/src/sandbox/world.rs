//! Which plugins this host can load: components built for its WIT world
//! (`deployhost:plugin`, a semver-compatible version) that import nothing
//! else than that world gives them. A refusal names what was found, so a
//! plugin author knows whether to rebuild or to drop an import.

/// The WIT package every plugin is built against (`wit/world.wit`).
pub const WORLD_PACKAGE: &str = "deployhost:plugin";
/// Its version; plugins built for a semver-compatible one load too.
pub const WORLD_VERSION: &str = "0.1.0";

/// Refuses a component whose imports come from another, incompatible
/// version of this host's world: linking would fail with a bare
/// "missing implementation", which hides that the plugin is simply too
/// new (or too old) for this deployhost.
pub fn check_version<'a>(label: &str, imports: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let prefix = format!("{WORLD_PACKAGE}/");
    for import in imports {
        let Some((_, version)) = import.strip_prefix(&prefix).and_then(|rest| rest.split_once('@')) else {
            continue;
        };
        if !compatible(version, WORLD_VERSION) {
            return Err(format!(
                "plugin {label} was built for {WORLD_PACKAGE}@{version} (it imports `{import}`), but this deployhost \
                 provides {WORLD_PACKAGE}@{WORLD_VERSION}: rebuild the plugin against this deployhost's wit/world.wit"
            ));
        }
    }
    Ok(())
}

/// Semver compatibility as the component linker applies it: same major,
/// and for 0.x the same minor (0.0.x only itself).
fn compatible(found: &str, expected: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64, u64)> {
        let core = v.split(['-', '+']).next()?;
        let mut it = core.split('.').map(|n| n.parse::<u64>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    };
    match (parts(found), parts(expected)) {
        (Some((0, 0, a)), Some((0, 0, b))) => a == b,
        (Some((0, a, _)), Some((0, b, _))) => a == b,
        (Some((a, _, _)), Some((b, _, _))) => a == b,
        _ => false,
    }
}

/// Rewrites the linker's "matching implementation was not found" into a
/// message that names the import the plugin wants and what the host offers.
pub fn explain_link_error(label: &str, error: &str) -> String {
    let marker = "component imports instance `";
    let name = error.find(marker).map(|i| &error[i + marker.len()..]).and_then(|rest| rest.split('`').next());
    match name {
        Some(name) => format!(
            "plugin {label} imports `{name}`, which this host does not provide (plugins may import the \
             {WORLD_PACKAGE}@{WORLD_VERSION} interfaces, wasi:http/outgoing-handler and WASI preview 2 only)"
        ),
        None => format!("plugin {label} needs imports this host does not provide: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_one_in_the_wit_file() {
        let wit = include_str!("../../../wit/world.wit");
        assert!(wit.contains(&format!("package {WORLD_PACKAGE}@{WORLD_VERSION};")));
    }

    #[test]
    fn semver_compatible_versions_load() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.7", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("0.0.1", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(!compatible("garbage", "0.1.0"));
    }

    #[test]
    fn another_world_version_is_named() {
        let err = check_version("./p.wasm", ["wasi:io/streams@0.2.12", "deployhost:plugin/log@0.2.0"]).unwrap_err();
        assert!(err.contains("deployhost:plugin@0.2.0") && err.contains("deployhost:plugin@0.1.0"), "{err}");
        assert!(check_version("./p.wasm", ["deployhost:plugin/log@0.1.3", "deployhost:plugin/types"]).is_ok());
    }

    #[test]
    fn a_missing_import_is_named() {
        let raw = "component imports instance `evil:x/backdoor`, but a matching implementation was not found";
        let message = explain_link_error("./p.wasm", raw);
        assert!(message.contains("imports `evil:x/backdoor`, which this host does not provide"), "{message}");
    }
}
