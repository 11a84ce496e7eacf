#!/usr/bin/env bash
# Packages the deployhost crate as crates.io would take it and builds it
# from the package: `cargo package` unpacks the .crate and builds that, so
# the plugin sources and the WIT must travel inside it (host/build.rs says
# how). The packaged manifest has no workspace, so the workspace's dev
# profile is passed on: the dependencies the tests compiled are reused
# rather than built again; only deployhost and its plugins are.
# `--workspace`: every crate the binary is made of, so a path dependency on
# another crate of the workspace is packaged and verified with it.
set -euo pipefail
cd "$(dirname "$0")/.."
# The packaged deployhost-pipeline comes from a throwaway registry, and
# cargo takes a registry crate of the same version as unchanged, twice: it
# keeps what an earlier run built of it, and it unpacks the .crate into the
# cargo home only once per registry path, so a checkout at the same path
# (a CI machine's) would verify deployhost against last time's sources.
# Drop both (they are small) so the verify build sees today's.
cargo clean --quiet -p deployhost-pipeline
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/deployhost-pipeline-*
cargo package --workspace --locked --offline \
    --config 'profile.dev.package."*".opt-level=1' \
    --config 'profile.dev.debug="line-tables-only"' \
    --config 'profile.dev.build-override.debug="line-tables-only"' "$@"
