/**
 * The proxy's own objects: its config (JSON in a ConfigMap, without
 * secrets), Deployment and Service. Secrets (admin token, API keys) come
 * from the Secret `vllm-chill-secrets` (keys `admin-token`, `api-keys`),
 * which is optional and never rendered.
 *
 * @module
 */
import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IConfigMap } from "kubernetes-models/v1/ConfigMap";
import type { IService } from "kubernetes-models/v1/Service";
import { VERSION } from "../cli/version.ts";
import { CONFIG_INPUT } from "../config/define.ts";
import { envName } from "../config/flags.ts";
import type { ChillConfig } from "../config/schema.ts";
import { labelsFor, PROXY_NAME, PROXY_SECRET, PROXY_SELECTOR } from "./labels.ts";

/** Image of the proxy, tagged with deno.json's version. */
export const PROXY_IMAGE = `ghcr.io/efortin/vllm-chill:${VERSION}`;
/** Port of the proxy's Service. */
export const PROXY_SERVICE_PORT = 8080;
/** Name of the proxy's config ConfigMap. */
export const PROXY_CONFIG_MAP = "vllm-chill-config";
/** Config keys never written into the ConfigMap: secrets, and what only makes sense outside the cluster. */
export const UNRENDERED_KEYS = ["apiKeys", "adminToken", "kubeconfig"] as const;

/**
 * The config as the in-cluster proxy reads it: the input the user wrote,
 * without secrets nor kubeconfig.
 *
 * @example
 * ```ts
 * import { proxyConfigJson } from "./proxy.ts";
 * import { parseConfig } from "../config/define.ts";
 * proxyConfigJson(parseConfig({ idleTimeout: "15m", adminToken: "s3cret-token" })); // { idleTimeout: "15m" }
 * ```
 */
export function proxyConfigJson(config: Readonly<ChillConfig>): Record<string, unknown> {
  const input = (config as unknown as Record<symbol, unknown>)[CONFIG_INPUT];
  if (input === undefined || input === null || typeof input !== "object") {
    throw new Error("renderProxy needs a config made by defineVllmChill or parseConfig");
  }
  const out = structuredClone(input) as Record<string, unknown>;
  for (const key of UNRENDERED_KEYS) delete out[key];
  return out;
}

/**
 * The proxy's ConfigMap (`config.json`), Deployment and Service.
 *
 * @example
 * ```ts
 * import { renderProxy } from "./proxy.ts";
 * import { parseConfig } from "../config/define.ts";
 * renderProxy(parseConfig({})).map((o) => o.kind); // ["ConfigMap", "Deployment", "Service"]
 * ```
 */
export function renderProxy(config: Readonly<ChillConfig>): [IConfigMap, IDeployment, IService] {
  const port = config.port || 8080;
  const labels = labelsFor(PROXY_NAME, "proxy");
  const secretEnv = (flag: string, key: string) => ({
    name: envName(flag),
    valueFrom: { secretKeyRef: { name: PROXY_SECRET, key, optional: true } },
  });
  return [
    {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: PROXY_CONFIG_MAP, namespace: config.namespace, labels },
      data: { "config.json": JSON.stringify(proxyConfigJson(config), null, 2) + "\n" },
    },
    {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: PROXY_NAME, namespace: config.namespace, labels },
      spec: {
        replicas: 1,
        // One proxy drives one engine slot: never two at once during a rollout.
        strategy: { type: "Recreate" },
        revisionHistoryLimit: 3,
        selector: { matchLabels: { ...PROXY_SELECTOR } },
        template: {
          metadata: { labels },
          spec: {
            serviceAccountName: PROXY_NAME,
            // The Service vllm-chill would inject VLLM_CHILL_PORT=tcp://…, which is also a config variable.
            enableServiceLinks: false,
            terminationGracePeriodSeconds: Math.ceil(config.drainTimeout / 1000) + 10,
            securityContext: {
              runAsNonRoot: true,
              runAsUser: 65532,
              runAsGroup: 65532,
              seccompProfile: { type: "RuntimeDefault" },
            },
            containers: [
              {
                name: "proxy",
                image: PROXY_IMAGE,
                imagePullPolicy: "IfNotPresent",
                args: ["serve", "--config", "/etc/vllm-chill/config.json"],
                ports: [{ name: "http", containerPort: port, protocol: "TCP" }],
                env: [
                  { name: envName("port"), value: String(port) },
                  secretEnv("admin-token", "admin-token"),
                  secretEnv("api-keys", "api-keys"),
                  { name: "DENO_DIR", value: "/tmp/deno" },
                ],
                resources: {
                  requests: { cpu: "100m", memory: "128Mi" },
                  limits: { memory: "512Mi" },
                },
                readinessProbe: { httpGet: { path: "/readyz", port: "http" }, periodSeconds: 5, failureThreshold: 2 },
                livenessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 10, failureThreshold: 3 },
                securityContext: {
                  runAsNonRoot: true,
                  readOnlyRootFilesystem: true,
                  allowPrivilegeEscalation: false,
                  capabilities: { drop: ["ALL"] },
                  seccompProfile: { type: "RuntimeDefault" },
                },
                volumeMounts: [
                  { name: "config", mountPath: "/etc/vllm-chill", readOnly: true },
                  { name: "tmp", mountPath: "/tmp" },
                ],
              },
            ],
            volumes: [
              { name: "config", configMap: { name: PROXY_CONFIG_MAP } },
              { name: "tmp", emptyDir: { sizeLimit: "64Mi" } },
            ],
          },
        },
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: PROXY_NAME, namespace: config.namespace, labels },
      spec: {
        type: "ClusterIP",
        selector: { ...PROXY_SELECTOR },
        ports: [{ name: "http", port: PROXY_SERVICE_PORT, targetPort: "http", protocol: "TCP" }],
      },
    },
  ];
}
