import assert from "node:assert/strict";
import { parse } from "yaml";
import { parseConfig } from "../../lib/config/define.ts";
import { renderProxy } from "../../lib/manifests/mod.ts";
import { createMetrics, Histogram } from "../../lib/metrics.ts";

const ROOT = new URL("../../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));

/** Every metric name lib/metrics.ts exports, with the series names a histogram adds. */
function exportedSeriesNames(): Set<string> {
  const names = new Set<string>();
  for (const metric of Object.values(createMetrics())) {
    if (typeof metric !== "object" || metric === null || !("name" in metric)) continue;
    const name = String(metric.name);
    if (metric instanceof Histogram) { for (const suffix of ["_bucket", "_sum", "_count"]) names.add(name + suffix); }
    else names.add(name);
  }
  return names;
}

function metricNamesIn(expr: string): string[] {
  return [...expr.matchAll(/\bvllm_chill_[a-z0-9_]+/g)].map((m) => m[0]);
}

/** Brackets, braces and parentheses balance and quotes close: catches most broken PromQL edits. */
function assertBalanced(expr: string, where: string): void {
  const stack: string[] = [];
  const pairs: Record<string, string> = { ")": "(", "]": "[", "}": "{" };
  let quote: string | null = null;
  for (const ch of expr) {
    if (quote) {
      if (ch === quote) quote = null;
      continue;
    }
    if (ch === '"' || ch === "'") quote = ch;
    else if ("([{".includes(ch)) stack.push(ch);
    else if (ch in pairs) assert.equal(stack.pop(), pairs[ch], `${where}: unbalanced '${ch}' in ${expr}`);
  }
  assert.equal(quote, null, `${where}: unclosed quote in ${expr}`);
  assert.deepEqual(stack, [], `${where}: unclosed bracket in ${expr}`);
}

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: { refId: string; expr: string; datasource?: { uid: string } }[];
}

Deno.test("dashboard: valid Grafana JSON with a datasource variable and the required panels", async () => {
  const dashboard = JSON.parse(await read("observability/grafana-dashboard.json"));
  assert.ok(dashboard.schemaVersion >= 36 && dashboard.schemaVersion <= 41, "schemaVersion ~39");
  assert.equal(typeof dashboard.uid, "string");
  assert.equal(typeof dashboard.title, "string");
  const variables: { name: string; type: string; query: unknown }[] = dashboard.templating.list;
  const ds = variables.find((v) => v.type === "datasource");
  assert.ok(ds, "a datasource variable");
  assert.equal(ds.query, "prometheus");
  const panels: Panel[] = dashboard.panels;
  const ids = panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
  for (const panel of panels) {
    assert.ok(panel.gridPos.x + panel.gridPos.w <= 24, `${panel.title} fits the 24-column grid`);
    if (panel.type === "row") continue;
    assert.equal(panel.datasource?.uid, `\${${ds.name}}`, `${panel.title} uses the datasource variable`);
    assert.ok(panel.targets && panel.targets.length > 0, `${panel.title} has queries`);
    for (const target of panel.targets) {
      assert.equal(target.datasource?.uid, `\${${ds.name}}`);
      assertBalanced(target.expr, panel.title);
    }
  }
  const exprs = panels.flatMap((p) => p.targets ?? []).map((t) => t.expr);
  const uses = (re: RegExp) => exprs.some((e) => re.test(e));
  assert.ok(uses(/vllm_chill_state\b/), "state panel");
  assert.ok(uses(/vllm_chill_active_model\b/), "active model panel");
  assert.ok(uses(/histogram_quantile\([^,]+, .*vllm_chill_cold_start_seconds_bucket/), "cold-start quantiles");
  assert.ok(uses(/histogram_quantile\([^,]+, .*vllm_chill_switch_duration_seconds_bucket/), "switch quantiles");
  assert.ok(uses(/vllm_chill_held_requests\b/), "held requests");
  assert.ok(uses(/sum by \(reason\) \(rate\(vllm_chill_rejected_requests_total/), "rejected by reason");
  assert.ok(uses(/sum by \(model, code\) \(rate\(vllm_chill_requests_total/), "request rate by model and code");
});

Deno.test("dashboard and alerts reference only metric names lib/metrics.ts exports", async () => {
  const exported = exportedSeriesNames();
  const dashboard = JSON.parse(await read("observability/grafana-dashboard.json"));
  const rule = parse(await read("observability/prometheus-rule.yaml"));
  const exprs: [string, string][] = [
    ...(dashboard.panels as Panel[]).flatMap((p) =>
      (p.targets ?? []).map((t) => [p.title, t.expr] as [string, string])
    ),
    ...dashboard.templating.list
      .filter((v: { definition?: string }) => v.definition)
      .map((v: { name: string; definition: string }) => [v.name, v.definition]),
    ...rule.spec.groups.flatMap((g: { rules: { alert: string; expr: string }[] }) =>
      g.rules.map((r) => [r.alert, r.expr] as [string, string])
    ),
  ];
  let checked = 0;
  for (const [where, expr] of exprs) {
    for (const name of metricNamesIn(expr)) {
      assert.ok(exported.has(name), `${where} uses ${name}, which lib/metrics.ts does not export`);
      checked++;
    }
  }
  assert.ok(checked > 20, "the check saw the queries");
});

Deno.test("the metric check can fail: a misspelled name is caught", () => {
  const exported = exportedSeriesNames();
  assert.ok(exported.has("vllm_chill_cold_start_seconds_bucket"));
  assert.ok(!exported.has("vllm_chill_cold_start_seconds"), "a histogram is queried through its _bucket/_sum/_count");
  assert.ok(!exported.has("vllm_chill_requests_totals"));
  assert.deepEqual(metricNamesIn('rate(vllm_chill_requests_totals{code="200"}[5m])'), ["vllm_chill_requests_totals"]);
});

Deno.test("PrometheusRule: well formed, covers cold start, held requests, thrash and scale-up failures", async () => {
  const rule = parse(await read("observability/prometheus-rule.yaml"));
  assert.equal(rule.apiVersion, "monitoring.coreos.com/v1");
  assert.equal(rule.kind, "PrometheusRule");
  assert.match(rule.metadata.name, /^[a-z0-9-]+$/);
  const rules: { alert: string; expr: string; for?: string; labels: { severity: string }; annotations: object }[] = rule
    .spec.groups.flatMap((g: { rules: unknown[] }) => g.rules);
  const alerts = rules.map((r) => r.alert);
  assert.equal(new Set(alerts).size, alerts.length, "alert names are unique");
  for (const r of rules) {
    assert.match(r.alert, /^[A-Z][A-Za-z0-9]+$/);
    assertBalanced(r.expr, r.alert);
    assert.ok(["info", "warning", "critical"].includes(r.labels.severity), `${r.alert} severity`);
    assert.ok("summary" in r.annotations && "description" in r.annotations, `${r.alert} annotations`);
    if (r.for !== undefined) assert.match(r.for, /^\d+[smh]$/);
  }
  const byMetric = (re: RegExp) => rules.some((r) => re.test(r.expr));
  assert.ok(byMetric(/vllm_chill_cold_start_seconds_bucket/), "cold start too slow");
  assert.ok(byMetric(/vllm_chill_held_requests/), "held requests piling up");
  // Thrash is counted in engine starts: a switch by wake (sleep mode) is cheap and not thrash.
  assert.ok(byMetric(/increase\(vllm_chill_scale_events_total\{direction="up"\}/), "thrash");
  assert.ok(byMetric(/vllm_chill_model_state\{state="failed"\}/), "a model failing");
  assert.ok(byMetric(/vllm_chill_rejected_requests_total\{reason="model_unavailable"/), "scale-up failures");
});

Deno.test("alerts and dashboard filter only on rejection reasons the proxy or scaler emit", async () => {
  const sources: string[] = [];
  for (const dir of ["lib/proxy", "lib/scaler"]) {
    for await (const entry of Deno.readDir(new URL(dir, ROOT))) {
      if (entry.isFile && entry.name.endsWith(".ts")) sources.push(await read(`${dir}/${entry.name}`));
    }
  }
  const code = sources.join("\n");
  const texts = [await read("observability/prometheus-rule.yaml"), await read("observability/grafana-dashboard.json")];
  const reasons = texts.flatMap((t) => [...t.matchAll(/reason=~?\\?"([^"\\]+)\\?"/g)].flatMap((m) => m[1].split("|")));
  assert.ok(reasons.length > 0, "some alert filters on a reason");
  for (const reason of reasons) {
    assert.ok(code.includes(`"${reason}"`), `reason "${reason}" is not emitted by lib/proxy or lib/scaler`);
  }
});

Deno.test("ServiceMonitor: scrapes /metrics on a named port", async () => {
  const monitor = parse(await read("observability/service-monitor.yaml"));
  assert.equal(monitor.apiVersion, "monitoring.coreos.com/v1");
  assert.equal(monitor.kind, "ServiceMonitor");
  assert.equal(monitor.spec.endpoints[0].path, "/metrics");
  assert.equal(typeof monitor.spec.endpoints[0].port, "string");
  assert.ok(Object.keys(monitor.spec.selector.matchLabels).length > 0);
});

Deno.test("ServiceMonitor selects the rendered proxy Service and one of its named ports", async () => {
  const monitor = parse(await read("observability/service-monitor.yaml"));
  const service = renderProxy(parseConfig({}))[2];
  const labels = service.metadata?.labels ?? {};
  for (const [key, value] of Object.entries(monitor.spec.selector.matchLabels as Record<string, string>)) {
    assert.equal(labels[key], value, `the proxy Service carries ${key}=${value}`);
  }
  const ports = (service.spec?.ports ?? []).map((p) => p.name);
  for (const endpoint of monitor.spec.endpoints as { port: string }[]) assert.ok(ports.includes(endpoint.port));
});
