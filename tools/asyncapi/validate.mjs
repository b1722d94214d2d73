// Parses and validates an AsyncAPI document with the official parser (@asyncapi/parser, pinned
// in package-lock.json), resolving $refs to files relative to the document. Prints every
// diagnostic; exits 1 on an error, or on a warning unless it is listed in ALLOWED_WARNINGS.
//   node validate.mjs ../../docs/asyncapi.yaml
import { Parser, fromFile, DiagnosticSeverity } from '@asyncapi/parser';
import path from 'node:path';

const ALLOWED_WARNINGS = new Set([]);

const file = path.resolve(process.argv[2] ?? '../../docs/asyncapi.yaml');
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, file).parse();
let failed = false;
for (const d of diagnostics) {
    const sev = d.severity === DiagnosticSeverity.Error ? 'error'
        : d.severity === DiagnosticSeverity.Warning ? 'warning' : 'info';
    const where = (d.path || []).join('/');
    console.log(`${sev} ${d.code}: ${d.message} at ${where}`);
    if (d.severity === DiagnosticSeverity.Error ||
        (d.severity === DiagnosticSeverity.Warning && !ALLOWED_WARNINGS.has(d.code)))
        failed = true;
}
if (document === undefined)
    failed = true;
else
    console.log(`${path.basename(file)}: AsyncAPI ${document.version()}, ` +
        `${document.messages().length} messages, ${document.channels().length} channel(s)`);
process.exit(failed ? 1 : 0);
