// Type-checks a snippet of TypeScript against the packages installed here, in memory, with the
// compiler of devDependencies: how a recipe (JSON or YAML data) is checked against an API's
// published input types. `satisfies` keeps the literal's string literals and rejects any field
// the type does not have, at any depth.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** The repository root (this file runs from dist/test/helpers/). */
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

const OPTIONS: ts.CompilerOptions = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  skipLibCheck: true,
  types: ['node'],
};

/** The compiler's errors for `source` as one module of the repository, one line each. */
export function typeErrors(source: string): string[] {
  const file = join(REPO, 'test', '__typecheck__.ts');
  const host = ts.createCompilerHost(OPTIONS);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest);
  host.fileExists = (name) => name === file || fileExists(name);
  host.readFile = (name) => (name === file ? source : readFile(name));
  const program = ts.createProgram([file], OPTIONS, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    if (!d.file || d.start === undefined) return text;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    return `${d.file.fileName === file ? 'snippet' : d.file.fileName}:${line + 1}: ${text}`;
  });
}
