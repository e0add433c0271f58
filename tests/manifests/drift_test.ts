import assert from "node:assert/strict";
import { generatedFiles, ROOT } from "../../scripts/render_manifests.ts";

Deno.test("manifests/ and README's generated sections match the code (run `deno task manifests`)", async () => {
  const files = await generatedFiles();
  assert.deepEqual(Object.keys(files).sort(), [
    "README.md",
    "manifests/crd.yaml",
    "manifests/default.yaml",
    "manifests/example.yaml",
  ]);
  for (const [path, expected] of Object.entries(files)) {
    const actual = await Deno.readTextFile(`${ROOT}${path}`).catch(() => "");
    assert.ok(actual === expected, `${path} drifted from the code: run \`deno task manifests\``);
  }
});
