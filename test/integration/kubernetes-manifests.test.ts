import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseAllDocuments } from 'yaml'
import { runValidate } from '../../src/cli/validate.js'
import { type Config, loadConfigFile } from '../../src/config/load.js'
import { ROOT } from '../helpers/cli.js'

const DIR = `${ROOT}config/kubernetes`

type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: any }; [k: string]: any }

function manifests(): { file: string; doc: Manifest }[] {
  const out: { file: string; doc: Manifest }[] = []
  for (const file of readdirSync(DIR).filter((f) => f.endsWith('.yaml')).sort()) {
    for (const d of parseAllDocuments(readFileSync(join(DIR, file), 'utf8'))) {
      expect(d.errors, `${file}: ${d.errors.join('; ')}`).toEqual([])
      if (d.contents !== null) out.push({ file, doc: d.toJS() as Manifest })
    }
  }
  return out
}

function one(all: Manifest[], kind: string, name: string): Manifest {
  const found = all.filter((m) => m.kind === kind && m.metadata.name === name)
  expect(found, `${kind}/${name}`).toHaveLength(1)
  return found[0]!
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v)
}

describe('config/kubernetes: sluice in front of a blue and a green Deployment', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'sluice-k8s-'))
  let all: Manifest[]
  let sluice: Manifest
  let container: any
  let secret: Manifest
  let configFile: string
  let env: Record<string, string>
  let config: Config

  beforeAll(async () => {
    all = manifests().map((m) => m.doc)
    sluice = one(all, 'Deployment', 'sluice')
    container = sluice.spec.template.spec.containers.find((c: any) => c.name === 'sluice')
    secret = one(all, 'Secret', 'sluice')
    // The container's environment as the kubelet builds it from the Secret.
    env = {}
    for (const e of container.env) {
      const ref = e.valueFrom?.secretKeyRef
      expect(ref, `env ${e.name} comes from a Secret`).toBeDefined()
      expect(ref.name).toBe(secret.metadata.name)
      expect(Object.keys(secret.stringData), `Secret key ${ref.key}`).toContain(ref.key)
      env[e.name] = secret.stringData[ref.key]
    }
    const volume = sluice.spec.template.spec.volumes.find((v: any) => v.configMap)
    const cm = one(all, 'ConfigMap', volume.configMap.name)
    const mount = container.volumeMounts.find((m: any) => m.name === volume.name)
    const configPath = container.command[container.command.indexOf('--config') + 1] as string
    const key = configPath.slice(mount.mountPath.length + 1)
    expect(configPath.startsWith(`${mount.mountPath}/`)).toBe(true)
    configFile = join(tmp, key)
    writeFileSync(configFile, cm.data[key])
    config = await loadConfigFile(configFile, env)
  })
  afterAll(() => rmSync(tmp, { recursive: true, force: true }))

  it('every manifest parses and names its kind, apiVersion, name and namespace', () => {
    expect(all.length).toBeGreaterThanOrEqual(10)
    for (const m of all) {
      expect(m.apiVersion, JSON.stringify(m.metadata)).toMatch(/^(v1|apps\/v1|policy\/v1)$/)
      expect(m.metadata.name).toMatch(/^[a-z0-9-]+$/)
      if (m.kind !== 'Namespace') expect(m.metadata.namespace).toBe('shop')
    }
    expect(all[0]).toMatchObject({ kind: 'Namespace', metadata: { name: 'shop' } })
  })

  it('the embedded sluice config passes `sluice validate` with the Secret as its environment', async () => {
    const out: string[] = []
    const code = await runValidate(['--config', configFile], {
      env,
      stdout: (s) => void out.push(s),
      stderr: (s) => void out.push(s),
    })
    expect({ code, out: out.join('') }).toEqual({ code: 0, out: 'ok\n' })
  })

  it('probes /readyz and /healthz on the admin port, which listens on the pod IP', () => {
    const ports = Object.fromEntries(container.ports.map((p: any) => [p.name, p.containerPort]))
    expect(ports).toEqual({ http: config.listen.port, admin: config.admin.port })
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' })
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' })
    expect(config.admin.host).toBe('0.0.0.0')
    const annotations = sluice.spec.template.metadata.annotations
    expect(annotations).toMatchObject({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': String(config.admin.port),
      'prometheus.io/path': '/metrics',
    })
  })

  it('stops behind the Service: drain.delayMs set, and a grace period above delay + timeout', () => {
    expect(config.drain.delayMs).toBeGreaterThan(0)
    const graceMs = sluice.spec.template.spec.terminationGracePeriodSeconds * 1000
    expect(graceMs).toBeGreaterThan(config.drain.delayMs + config.drain.timeoutMs)
  })

  it('runs non-root on a read-only root filesystem, with resources', () => {
    const pod = sluice.spec.template.spec
    expect(pod.securityContext.runAsNonRoot).toBe(true)
    expect(container.securityContext).toMatchObject({
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    })
    expect(container.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) })
    expect(container.resources.limits.memory).toEqual(expect.any(String))
    // Nothing may need a writable path besides the mounted ones: no state file (Redis holds the state).
    expect(config.state.file).toBeUndefined()
    expect(config.redis?.url).toBe(env.REDIS_URL)
  })

  it('has a PodDisruptionBudget for the sluice pods and a Service in front of them', () => {
    const labels = sluice.spec.template.metadata.labels
    expect(selects(sluice.spec.selector.matchLabels, labels)).toBe(true)
    const pdb = one(all, 'PodDisruptionBudget', 'sluice')
    expect(selects(pdb.spec.selector.matchLabels, labels)).toBe(true)
    expect(pdb.spec.minAvailable).toBeLessThan(sluice.spec.replicas)
    const front = all.find((m) => m.kind === 'Service' && m.spec.selector && selects(m.spec.selector, labels))!
    expect(front.spec.ports[0].targetPort).toBe('http')
    expect(front.spec.clusterIP).toBeUndefined()
  })

  it('discovers each version through a headless Service selecting that version Deployment', () => {
    const discovering = config.versions.filter((v) => v.discover?.dns !== undefined)
    expect(discovering.map((v) => v.name)).toEqual(['blue', 'green'])
    for (const v of discovering) {
      const [name, ns] = v.discover!.dns!.split('.')
      const svc = all.find((m) => m.kind === 'Service' && m.metadata.name === name && m.metadata.namespace === ns)!
      expect(svc, `headless Service for ${v.name}`).toBeDefined()
      expect(v.discover!.dns).toBe(`${name}.${ns}.svc.cluster.local`)
      expect(svc.spec.clusterIP).toBe('None')
      expect(svc.spec.publishNotReadyAddresses).toBe(false)
      const deployment = all.find(
        (m) => m.kind === 'Deployment' && m !== sluice && selects(svc.spec.selector, m.spec.template.metadata.labels),
      )!
      expect(deployment, `Deployment behind ${name}`).toBeDefined()
      const appPort = deployment.spec.template.spec.containers[0].ports.find((p: any) => p.name === 'http')
      expect(appPort.containerPort).toBe(v.discover!.port)
      expect(svc.spec.ports[0].port).toBe(v.discover!.port)
      // A terminating app pod keeps serving while sluice lets go of it (README "Discovery", Kubernetes).
      const graceMs = deployment.spec.template.spec.terminationGracePeriodSeconds * 1000
      expect(graceMs).toBeGreaterThan(5000 + v.discover!.intervalMs + config.drain.timeoutMs)
    }
  })
})
