//! A plugin built against `deployhost:plugin@0.2.0`, a world version this
//! host does not provide, for the tests only: deployhost must refuse it
//! when loading, naming the version it found and the one it expects.

wit_bindgen::generate!({
    inline: r"
        package deployhost:plugin@0.2.0;

        interface types {
            record step-context {
                step: string,
                params: string,
            }
            record report {
                summary: string,
            }
        }

        interface log {
            log: func(message: string);
        }

        world step {
            use types.{step-context, report};
            import log;
            export describe: func() -> string;
            export run: func(ctx: step-context) -> result<report, string>;
        }
    ",
    world: "step",
});

use deployhost::plugin::log;

struct WrongVersion;

impl Guest for WrongVersion {
    fn describe() -> String {
        "wrong-version".into()
    }

    fn run(ctx: StepContext) -> Result<Report, String> {
        log::log(&ctx.step);
        Ok(Report { summary: "ran under a world it was not built for".into() })
    }
}

export!(WrongVersion);
