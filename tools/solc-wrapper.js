#!/usr/bin/env node
// A `solc` command line over the npm solcjs build, enough for py-solc-x and Brownie:
// `--version` and `--standard-json` (input on stdin, output on stdout).
// Handles the traps listed in shared/TOOLCHAIN.md: flags solcjs rejects (--allow-paths,
// --base-path), a stray "Cannot retry compilation with SMT" line, stdout cut at 64 KiB,
// and imports resolved from disk (remapped node_modules paths, allowed folders).
'use strict';
const fs = require('fs');
const path = require('path');

const solc = require(process.env.PEERWATT_SOLCJS || 'solc');

function parseArgs(argv) {
  const opts = { roots: [process.cwd()], standardJson: false, version: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--version') opts.version = true;
    else if (arg === '--standard-json') opts.standardJson = true;
    else if (arg === '--allow-paths' || arg === '--base-path' || arg === '--include-path') {
      for (const dir of (argv[++i] || '').split(',')) if (dir) opts.roots.push(path.resolve(dir));
    }
  }
  return opts;
}

function writeAllSync(text) {
  // Synchronous writes: node may drop piped output past 64 KiB if it exits after an async write.
  const buffer = Buffer.from(text, 'utf8');
  let offset = 0;
  while (offset < buffer.length) {
    try {
      offset += fs.writeSync(1, buffer, offset, buffer.length - offset);
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
    }
  }
}

function makeImportCallback(roots) {
  return (importPath) => {
    const candidates = path.isAbsolute(importPath)
      ? [importPath]
      : roots.map((root) => path.join(root, importPath));
    for (const file of candidates) {
      if (fs.existsSync(file) && fs.statSync(file).isFile()) {
        return { contents: fs.readFileSync(file, 'utf8') };
      }
    }
    return { error: `File not found: ${importPath} (searched ${roots.join(', ')})` };
  };
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.version) {
    writeAllSync(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
    return 0;
  }
  if (!opts.standardJson) {
    process.stderr.write('solc-wrapper: only --version and --standard-json are supported\n');
    return 2;
  }
  const input = fs.readFileSync(0, 'utf8');
  let output = solc.compile(input, { import: makeImportCallback(opts.roots) });
  // solcjs may prefix a diagnostic line; keep only the JSON document.
  const start = output.indexOf('{');
  if (start > 0) output = output.slice(start);
  writeAllSync(output);
  return 0;
}

process.exitCode = main();
