#!/usr/bin/env bash
# (Re)creates host/plugin-sources/: symlinks to the plugins workspace with
# each Cargo.toml named Cargo.toml.in, so that `cargo package` takes the
# plugin sources into the deployhost crate (it leaves out any folder holding
# a Cargo.toml, and so host/plugins -> ../plugins). host/build.rs puts the
# workspace back together from them when built from the package. Run it after
# adding or removing a plugin crate.
set -euo pipefail
cd "$(dirname "$0")/../host"
rm -rf plugin-sources
mkdir -p plugin-sources/python
ln -s ../../plugins/Cargo.toml plugin-sources/Cargo.toml.in
ln -s ../../plugins/Cargo.lock plugin-sources/Cargo.lock
for manifest in ../plugins/*/Cargo.toml; do
    crate=$(basename "$(dirname "$manifest")")
    mkdir "plugin-sources/$crate"
    ln -s "../../../plugins/$crate/Cargo.toml" "plugin-sources/$crate/Cargo.toml.in"
    ln -s "../../../plugins/$crate/src" "plugin-sources/$crate/src"
done
# What `deployhost plugin new --lang python` copies (see build.rs).
ln -s ../../../plugins/python/requirements.txt plugin-sources/python/requirements.txt
ln -s ../../../plugins/python/py-file-check plugin-sources/python/py-file-check
