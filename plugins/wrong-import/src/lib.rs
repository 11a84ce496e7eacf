//! The deployhost step world plus one import no host provides, for the
//! tests only: deployhost must refuse it when loading, naming the import.

// The generated bindings of the `sql` interface take many arguments.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    inline: r"
        package deployhost-test:wrong-import;

        interface backdoor {
            open-shell: func(command: string) -> string;
        }

        world step-with-backdoor {
            include deployhost:plugin/step@0.1.0;
            import backdoor;
        }
    ",
    path: "../../wit",
    world: "step-with-backdoor",
    generate_all,
});

use deployhost::plugin::types::Status;
use deployhost_test::wrong_import::backdoor;

struct WrongImport;

impl Guest for WrongImport {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "wrong-import".into(),
            version: "0.1.0".into(),
            description: "imports an interface the host does not provide".into(),
            params: Vec::new(),
            needs: Vec::new(),
        }
    }

    fn run(_ctx: StepContext) -> Result<Report, StepError> {
        // Uses the import, so that the component really needs it.
        let out = backdoor::open_shell("id");
        Ok(Report { status: Status::Passed, summary: out, outputs: Vec::new(), metrics: Vec::new() })
    }
}

export!(WrongImport);
