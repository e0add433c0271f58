import assert from "node:assert/strict";
import { API_CALLS } from "../../lib/kube/api_calls.ts";

const ROOT = new URL("../../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));

/** The rows of the markdown table under "## The rules" in docs/RBAC.md: [group, resource, verbs]. */
function rbacRows(markdown: string): { group: string; resource: string; verbs: string[] }[] {
  const section = markdown.split("## The rules")[1]?.split("\n## ")[0] ?? "";
  return section.split("\n")
    .filter((line) => line.startsWith("|") && !line.startsWith("| API group") && !line.startsWith("| ---"))
    .map((line) => line.split("|").slice(1, -1).map((cell) => cell.trim().replaceAll("`", "")))
    .map(([group, resource, verbs]) => ({
      group: group === "core" ? "" : group,
      resource,
      verbs: verbs.split(",").map((v) => v.trim()).sort(),
    }));
}

Deno.test("docs/RBAC.md explains exactly the rules of the API-call table", async () => {
  const rows = rbacRows(await read("docs/RBAC.md"));
  const expected = API_CALLS.map((c) => ({
    group: c.group,
    resource: c.subresource ? `${c.resource}/${c.subresource}` : c.resource,
    verbs: [...c.verbs].sort(),
  }));
  assert.deepEqual(
    rows.map((r) => `${r.group} ${r.resource} ${r.verbs.join(",")}`).sort(),
    expected.map((r) => `${r.group} ${r.resource} ${r.verbs.join(",")}`).sort(),
  );
});

Deno.test("the RBAC doc check can fail: a missing verb is noticed", () => {
  const rows = rbacRows(
    "## The rules\n\n| API group | resource | verbs | why |\n| --- | --- | --- | --- |\n" +
      "| core | `pods` | list, watch | x |\n\n## Next\n| a | b | c | d |\n",
  );
  assert.deepEqual(rows, [{ group: "", resource: "pods", verbs: ["list", "watch"] }]);
});

Deno.test("docs use DESIGN.md's names: every config key they cite exists", async () => {
  const { ChillConfigSchema } = await import("../../lib/config/schema.ts");
  const keys = new Set(Object.keys(ChillConfigSchema.shape));
  const tuning = await read("docs/TUNING.md");
  const cited = [...tuning.matchAll(/^\| `([a-zA-Z]+)` \|/gm)].map((m) => m[1]);
  assert.ok(cited.length >= 7);
  for (const key of cited) assert.ok(keys.has(key), `docs/TUNING.md cites unknown config key ${key}`);
});

Deno.test("docs link to files that exist", async () => {
  for (const doc of ["INSTALL", "RBAC", "UPGRADING", "TROUBLESHOOTING", "TUNING", "COMPARISON", "CONFIG_FLOW"]) {
    const text = await read(`docs/${doc}.md`);
    for (const [, target] of text.matchAll(/\]\(([A-Z_]+\.md)(#[^)]*)?\)/g)) {
      await Deno.stat(new URL(`docs/${target}`, ROOT));
    }
  }
});

Deno.test("the rejection reasons TROUBLESHOOTING.md lists are emitted by the proxy or the scaler", async () => {
  let code = "";
  for (const dir of ["lib/proxy", "lib/scaler"]) {
    for await (const entry of Deno.readDir(new URL(dir, ROOT))) {
      if (entry.isFile && entry.name.endsWith(".ts")) code += await read(`${dir}/${entry.name}`);
    }
  }
  const text = await read("docs/TROUBLESHOOTING.md");
  const paragraph = text.slice(
    text.indexOf("Rejection reasons:"),
    text.indexOf("\n\n", text.indexOf("Rejection reasons:")),
  );
  const reasons = [...paragraph.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]);
  assert.ok(reasons.length >= 8);
  for (const reason of reasons) {
    assert.ok(code.includes(`"${reason}"`), `reason ${reason} is not in lib/proxy or lib/scaler`);
  }
});

/** GitHub's heading anchor: lowercase, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading.toLowerCase().replace(/[^\p{L}\p{N}\s-]/gu, "").replace(/\s/g, "-");
}

Deno.test("runbook and cross-document anchors point at real headings", async () => {
  const rule = await read("observability/prometheus-rule.yaml");
  const links = [...rule.matchAll(/runbook: (docs\/[A-Z_]+\.md)#([a-z0-9-]+)/g)].map((m) => [m[1], m[2]]);
  for (const doc of ["INSTALL", "RBAC", "UPGRADING", "TROUBLESHOOTING", "TUNING", "COMPARISON", "CONFIG_FLOW"]) {
    const text = await read(`docs/${doc}.md`);
    for (const [, target, anchor] of text.matchAll(/\]\(([A-Z_]+\.md)#([^)]+)\)/g)) {
      links.push([`docs/${target}`, anchor]);
    }
  }
  assert.ok(links.length >= 6);
  for (const [file, anchor] of links) {
    const headings = [...(await read(file)).matchAll(/^#+ (.+)$/gm)].map((m) => slug(m[1]));
    assert.ok(headings.includes(anchor), `${file}#${anchor} has no heading`);
  }
  assert.equal(slug("holdTimeout — how long a request may wait"), "holdtimeout--how-long-a-request-may-wait");
});
