/**
 * deploy/kubernetes: the base and the example overlay render (with a minimal in-test kustomize,
 * checked against `kubectl kustomize` where kubectl is installed), every manifest is valid
 * against the Kubernetes schemas with no unknown field, the pieces refer to each other correctly
 * (Service ↔ pod labels, probes ↔ ports ↔ the daemon's listeners, ConfigMap/Secret keys ↔ the
 * paths the daemon reads, bootstrap name ↔ headless Service), the daemon accepts the rendered
 * configuration and answers its probes, and the init container's script writes containerd's
 * hosts.toml files.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, posix } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { parse as parseToml } from 'smol-toml'
import { parse as parseYaml } from 'yaml'
import { type DaemonConfig, envConfig, type RawConfig, resolveConfig } from '../../src/config/config.js'
import { schemaErrors, typeErrors } from './k8s-validate.js'
import {
  isObj,
  kubectlKustomize,
  type Manifest,
  normalized,
  type Obj,
  podContainers,
  podSpec,
  renderKustomization,
} from './kustomize.js'
import { cli, freePort, get, ROOT, startDaemon, startOrigin } from './support.js'

const K8S = join(ROOT, 'deploy/kubernetes')
/** The daemon's own bound on its origin check inside /readyz (src/origin/client.ts, reachable()). */
const READYZ_ORIGIN_CHECK_S = 3

let work: string
const rendered: Record<string, Manifest[]> = {}
const dirs: Record<string, string> = {}

before(() => {
  work = mkdtempSync(join(tmpdir(), 'shoal-k8s-'))
  cpSync(K8S, join(work, 'kubernetes'), { recursive: true })
  // The operator's step: a swarm key next to the overlay's kustomization.
  const key = cli(['keygen', '-o', join(work, 'kubernetes/overlays/example/swarm.key')])
  assert.equal(key.status, 0, key.stderr)
  // An overlay of the overlay that moves everything to another namespace: the bootstrap name
  // must follow (it is built from the pod's namespace).
  mkdirSync(join(work, 'kubernetes/overlays/moved'))
  writeFileSync(
    join(work, 'kubernetes/overlays/moved/kustomization.yaml'),
    'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: mirror-system\nresources:\n  - ../example\n',
  )
  dirs.base = join(work, 'kubernetes/base')
  dirs.example = join(work, 'kubernetes/overlays/example')
  dirs.moved = join(work, 'kubernetes/overlays/moved')
  for (const [name, dir] of Object.entries(dirs)) rendered[name] = renderKustomization(dir)
})

after(() => {
  if (work !== undefined) rmSync(work, { recursive: true, force: true })
})

// ---------------------------------------------------------------------------------------------
// Helpers over rendered manifests

function one(ms: Manifest[], kind: string, name?: string): Manifest {
  const found = ms.filter((m) => m.kind === kind && (name === undefined || m.metadata.name === name))
  assert.equal(
    found.length,
    1,
    `expected one ${kind}${name === undefined ? '' : ` named ${name}`}, got ${found.length}`,
  )
  return found[0]!
}

function list(v: unknown): Obj[] {
  return Array.isArray(v) ? v.filter(isObj) : []
}

function container(ds: Manifest, name: string, init = false): Obj {
  const spec = podSpec(ds)!
  const c = list(init ? spec.initContainers : spec.containers).find((x) => x.name === name)
  assert.ok(c !== undefined, `no ${init ? 'init ' : ''}container ${name}`)
  return c
}

/** A container's environment as the kubelet builds it: fieldRefs filled in, $(VAR) expanded. */
function containerEnv(c: Obj, pod: { namespace: string }): Record<string, string> {
  const env: Record<string, string> = {}
  for (const e of list(c.env)) {
    const name = String(e.name)
    if (isObj(e.valueFrom)) {
      const ref = isObj(e.valueFrom.fieldRef) ? e.valueFrom.fieldRef.fieldPath : undefined
      assert.equal(ref, 'metadata.namespace', `env ${name}: only the namespace fieldRef is expected`)
      env[name] = pod.namespace
    } else {
      env[name] = String(e.value ?? '').replace(
        /\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g,
        (whole, v: string) => env[v] ?? whole,
      )
      assert.ok(!env[name]!.includes('$('), `env ${name}="${env[name]}" refers to a variable not defined before it`)
    }
  }
  return env
}

function portOf(c: Obj, ref: unknown): Obj {
  const p = list(c.ports).find((x) => (typeof ref === 'string' ? x.name === ref : x.containerPort === ref))
  assert.ok(p !== undefined, `container ${String(c.name)} has no port ${String(ref)}`)
  return p
}

function mountFor(c: Obj, path: string): Obj {
  const m = list(c.volumeMounts)
    .filter((v) => path === v.mountPath || path.startsWith(`${String(v.mountPath)}/`))
    .sort((a, b) => String(b.mountPath).length - String(a.mountPath).length)[0]
  assert.ok(m !== undefined, `container ${String(c.name)} mounts nothing at ${path}`)
  return m
}

function volume(ds: Manifest, name: unknown): Obj {
  const v = list(podSpec(ds)!.volumes).find((x) => x.name === name)
  assert.ok(v !== undefined, `no volume ${String(name)}`)
  return v
}

function daemonConfig(ms: Manifest[]): { env: Record<string, string>; config: DaemonConfig; file: RawConfig } {
  const ds = one(ms, 'DaemonSet')
  const env = containerEnv(container(ds, 'shoal'), { namespace: ds.metadata.namespace! })
  const cm = one(ms, 'ConfigMap', 'shoal-config')
  const file = parseYaml(String((cm.data as Obj)['config.yaml'])) as RawConfig
  return { env, file, config: resolveConfig({ env: envConfig(env), file }) }
}

// ---------------------------------------------------------------------------------------------

describe('deploy/kubernetes', () => {
  test('the test renderer gives what kubectl kustomize gives', (t) => {
    for (const [name, dir] of Object.entries(dirs)) {
      const real = kubectlKustomize(dir)
      if (real === undefined) {
        t.diagnostic('kubectl is not installed: only the in-test renderer was used')
        return
      }
      assert.deepEqual(normalized(rendered[name]!), normalized(real), `${name} renders differently`)
    }
  })

  test('renders the expected resources', () => {
    const ids = (ms: Manifest[]): string[] => ms.map((m) => `${m.kind}/${m.metadata.name}`).sort()
    const expected = [
      'ConfigMap/shoal-config',
      'DaemonSet/shoal',
      'Namespace/shoal',
      'Secret/shoal-swarm-key',
      'Service/shoal-peers',
      'ServiceAccount/shoal',
    ]
    assert.deepEqual(ids(rendered.base!), expected)
    assert.deepEqual(ids(rendered.example!), expected)
    assert.deepEqual(
      ids(rendered.moved!),
      expected.map((id) => (id === 'Namespace/shoal' ? 'Namespace/mirror-system' : id)).sort(),
    )
    for (const m of rendered.moved!) if (m.kind !== 'Namespace') assert.equal(m.metadata.namespace, 'mirror-system')
  })

  test('every manifest is valid against the Kubernetes schemas', () => {
    for (const [name, ms] of Object.entries(rendered)) assert.deepEqual(schemaErrors(ms), [], name)
    // The check does catch a bad value.
    const bad = structuredClone(one(rendered.base!, 'Service'))
    ;(bad.spec as { ports: Obj[] }).ports[0]!.port = 'p2p'
    assert.equal(schemaErrors([bad]).length, 1)
  })

  test('no manifest has a field the Kubernetes API does not know', () => {
    const bad = structuredClone(one(rendered.base!, 'DaemonSet'))
    const c = container(bad, 'shoal')
    c.livenesProbe = c.livenessProbe
    const errors = typeErrors([...rendered.base!, ...rendered.example!, bad])
    // Exactly the planted typo, so every real manifest is clean.
    assert.equal(errors.length, 1, errors.join('\n'))
    assert.match(errors[0]!, /livenesProbe/)
  })

  for (const name of ['base', 'example', 'moved']) {
    test(`${name}: the pieces refer to each other`, () => {
      const ms = rendered[name]!
      const ds = one(ms, 'DaemonSet')
      const ns = ds.metadata.namespace!
      const pod = podSpec(ds)!
      const podLabels = ((ds.spec as Obj).template as { metadata: { labels: Record<string, string> } }).metadata.labels
      const matchLabels = ((ds.spec as Obj).selector as { matchLabels: Record<string, string> }).matchLabels
      for (const [k, v] of Object.entries(matchLabels)) assert.equal(podLabels[k], v, `selector ${k}`)
      assert.equal(one(ms, 'Namespace').metadata.name, ns)

      // The headless Service selects the daemon's pods and exposes the p2p port.
      const svc = one(ms, 'Service')
      const svcSpec = svc.spec as { clusterIP: string; selector: Record<string, string>; ports: Obj[] } & Obj
      assert.equal(svc.metadata.namespace, ns)
      assert.equal(svcSpec.clusterIP, 'None')
      assert.equal(svcSpec.publishNotReadyAddresses, true)
      for (const [k, v] of Object.entries(svcSpec.selector)) assert.equal(podLabels[k], v, `Service selector ${k}`)
      const main = container(ds, 'shoal')
      const p2p = portOf(main, svcSpec.ports[0]!.targetPort)
      assert.equal(svcSpec.ports[0]!.port, p2p.containerPort)

      // Host networking: the mirror on the node's loopback, host ports equal to container ports.
      assert.equal(pod.hostNetwork, true)
      assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet')
      for (const c of podContainers(ds)) for (const p of list(c.ports)) assert.equal(p.hostPort, p.containerPort)

      // The daemon's environment and file resolve to a valid configuration wired to the ports.
      const { env, config } = daemonConfig(ms)
      assert.equal(config.listen.host, '127.0.0.1')
      assert.equal(config.listen.port, portOf(main, 'mirror').containerPort)
      assert.equal(config.adminListen?.port, portOf(main, 'admin').containerPort)
      const p2pPorts = config.swarm.listen.map((a) => Number(/\/tcp\/(\d+)/.exec(a)?.[1]))
      assert.deepEqual(p2pPorts, [p2p.containerPort])
      // The bootstrap name is the headless Service's, in the namespace the pod runs in.
      assert.deepEqual(config.swarm.bootstrap, [
        `dns:${svc.metadata.name}.${ns}.svc.${env.CLUSTER_DOMAIN}:${String(svcSpec.ports[0]!.port)}`,
      ])

      // Probes: /healthz and /readyz on the admin listener, from the node's loopback.
      const probes = { livenessProbe: '/healthz', readinessProbe: '/readyz' }
      for (const [probe, path] of Object.entries(probes)) {
        const p = main[probe] as { httpGet: Obj; timeoutSeconds: number }
        assert.equal(p.httpGet.path, path)
        assert.equal(portOf(main, p.httpGet.port).containerPort, config.adminListen?.port)
        assert.equal(p.httpGet.host, config.adminListen?.host, `${probe} must reach the admin listener`)
        // /readyz waits up to 3 s for its origin check: the probe must wait longer.
        assert.ok(p.timeoutSeconds > READYZ_ORIGIN_CHECK_S, `${probe}.timeoutSeconds`)
      }

      // Files the daemon reads exist in the ConfigMap and Secret its volumes name.
      const cm = one(ms, 'ConfigMap')
      const secret = one(ms, 'Secret')
      const fileIn = (path: string, c: Obj): { source: Manifest; key: string } => {
        const mount = mountFor(c, path)
        const v = volume(ds, mount.name)
        const key = posix.relative(String(mount.mountPath), path)
        if (isObj(v.configMap)) {
          assert.equal(v.configMap.name, cm.metadata.name)
          assert.ok(key in (cm.data as Obj), `ConfigMap has no ${key}`)
          return { source: cm, key }
        }
        assert.ok(isObj(v.secret), `${path} is neither in a ConfigMap nor a Secret`)
        assert.equal(v.secret.secretName, secret.metadata.name)
        const keys = { ...(secret.data as Obj), ...(secret.stringData as Obj) }
        assert.ok(key in keys, `Secret has no ${key}`)
        return { source: secret, key }
      }
      assert.equal(fileIn(env.SHOAL_CONFIG!, main).source, cm)
      assert.equal(fileIn(config.swarm.swarmKey!, main).source, secret)
      // The daemon (uid 1000) reads the key through the pod's fsGroup: 0440, never world-readable.
      assert.equal(volume(ds, mountFor(main, config.swarm.swarmKey!).name).secret, volume(ds, 'swarm-key').secret)
      assert.equal((volume(ds, 'swarm-key').secret as Obj).defaultMode, 0o440)
      assert.equal((pod.securityContext as Obj).fsGroup, (main.securityContext as Obj).runAsUser)

      // The cache is the node's /var/lib/shoal.
      const dataVolume = volume(ds, mountFor(main, config.dataDir).name)
      assert.equal(mountFor(main, config.dataDir).mountPath, config.dataDir)
      assert.equal((dataVolume.hostPath as Obj).path, '/var/lib/shoal')

      // The init container: the same image, the same mirror address, the cache dir handed to the
      // daemon's user, its script and registry list from the ConfigMap.
      const init = container(ds, 'configure-containerd', true)
      const initEnv = containerEnv(init, { namespace: ns })
      assert.equal(init.image, main.image)
      assert.equal(initEnv.SHOAL_MIRROR, `http://${config.listen.host}:${config.listen.port}`)
      assert.equal(fileIn(String((init.command as string[])[1]), init).source, cm)
      assert.equal(fileIn(initEnv.SHOAL_REGISTRIES_FILE!, init).source, cm)
      assert.equal(mountFor(init, initEnv.SHOAL_HOST_DATA_DIR!).name, mountFor(main, config.dataDir).name)
      assert.equal(Number(initEnv.SHOAL_UID), (main.securityContext as Obj).runAsUser)
      assert.equal(Number(initEnv.SHOAL_GID), (main.securityContext as Obj).runAsGroup)
      const certs = volume(ds, mountFor(init, initEnv.SHOAL_CERTS_D!).name)
      assert.equal(isObj(certs.hostPath), true)
      assert.ok(!list(main.volumeMounts).some((m) => m.name === certs.name), 'the daemon does not touch certs.d')

      // Service account, resources, hardening.
      assert.equal(pod.serviceAccountName, one(ms, 'ServiceAccount').metadata.name)
      assert.equal(pod.automountServiceAccountToken, false)
      for (const c of podContainers(ds)) {
        const r = c.resources as { requests: Obj; limits: Obj }
        for (const k of ['cpu', 'memory']) {
          assert.ok(r.requests[k] !== undefined && r.limits[k] !== undefined, `${String(c.name)}: ${k}`)
        }
        const sc = c.securityContext as Obj
        assert.equal(sc.allowPrivilegeEscalation, false)
        assert.equal(sc.readOnlyRootFilesystem, true)
        assert.deepEqual((sc.capabilities as Obj).drop, ['ALL'])
      }
      assert.equal((main.securityContext as Obj).runAsNonRoot, true)
      assert.equal(
        (main.securityContext as { capabilities: Obj }).capabilities.add,
        undefined,
        'the daemon needs no capability',
      )
    })
  }

  test('the example overlay sets the per-cluster values', () => {
    const base = one(rendered.base!, 'DaemonSet')
    const ex = rendered.example!
    const ds = one(ex, 'DaemonSet')
    for (const c of podContainers(ds)) assert.equal(c.image, 'registry.example.com/platform/shoal:0.1.0')
    assert.notDeepEqual(container(ds, 'shoal').resources, container(base, 'shoal').resources)
    // The patch merged into the container: the base's env and mounts are all still there.
    assert.equal(list(container(ds, 'shoal').env).length, list(container(base, 'shoal').env).length)
    assert.equal(list(container(ds, 'shoal').volumeMounts).length, list(container(base, 'shoal').volumeMounts).length)
    const cm = one(ex, 'ConfigMap').data as Record<string, string>
    assert.match(cm['mirror-registries']!, /^registry\.example\.com$/m)
    assert.ok('configure-containerd.sh' in cm, 'the patch keeps the base script')
    assert.deepEqual(daemonConfig(ex).config.cacheMax, { bytes: 50 * 1024 ** 3 })
    // The swarm key is the operator's file, and the placeholder is gone.
    const secret = one(ex, 'Secret')
    assert.equal(secret.stringData, undefined)
    const key = Buffer.from(String((secret.data as Obj)['swarm.key']), 'base64').toString('utf8')
    assert.match(key, /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
  })

  test('the daemon starts with the rendered environment and answers its probes', async () => {
    const ex = rendered.example!
    const ds = one(ex, 'DaemonSet')
    const { env } = daemonConfig(ex)
    const dir = join(work, 'run')
    mkdirSync(dir)
    const cm = one(ex, 'ConfigMap').data as Record<string, string>
    writeFileSync(join(dir, 'config.yaml'), cm['config.yaml']!)
    writeFileSync(join(dir, 'swarm.key'), Buffer.from(String((one(ex, 'Secret').data as Obj)['swarm.key']), 'base64'))
    const [listen, admin, p2p, nobody] = await Promise.all([1, 2, 3, 4].map(() => freePort()))
    const origin = await startOrigin()
    // Only what must change off-cluster: loopback ports, temp paths, no peers, no real origin.
    const daemon = startDaemon({
      PATH: process.env.PATH,
      ...env,
      SHOAL_CONFIG: join(dir, 'config.yaml'),
      SHOAL_SWARM_KEY: join(dir, 'swarm.key'),
      SHOAL_DATA_DIR: join(dir, 'data'),
      SHOAL_LISTEN: `127.0.0.1:${listen}`,
      SHOAL_ADMIN_LISTEN: `127.0.0.1:${admin}`,
      SHOAL_P2P_LISTEN: `/ip4/127.0.0.1/tcp/${p2p}`,
      SHOAL_BOOTSTRAP: `/ip4/127.0.0.1/tcp/${nobody}`,
      SHOAL_DEFAULT_UPSTREAM: origin.url,
    })
    try {
      const main = container(ds, 'shoal')
      const probe = async (name: string): Promise<number | undefined> =>
        (await get(`http://127.0.0.1:${admin}${String((main[name] as { httpGet: Obj }).httpGet.path)}`))?.status
      const deadline = Date.now() + 12_000
      while ((await probe('readinessProbe')) !== 200) {
        assert.ok(Date.now() < deadline, `readiness probe never passed:\n${daemon.output()}`)
        await sleep(100)
      }
      assert.equal(await probe('livenessProbe'), 200)
      assert.equal((await get(`http://127.0.0.1:${listen}/v2/`))?.status, 200)
      // /readyz says why: store open, swarm started, the (stand-in) origin reachable.
      const ready = await get(`http://127.0.0.1:${admin}/readyz`)
      assert.deepEqual(JSON.parse(ready?.body ?? '{}'), { ready: true, store: true, swarm: true, origin: true })
    } finally {
      assert.equal(await daemon.stop(), 0, daemon.output())
      await origin.close()
    }
  })

  test("the base's placeholder swarm key stops the daemon with a clear message", () => {
    const dir = join(work, 'placeholder')
    mkdirSync(dir)
    const secret = one(rendered.base!, 'Secret')
    writeFileSync(join(dir, 'swarm.key'), String((secret.stringData as Obj)['swarm.key']))
    const res = cli(['daemon'], {
      PATH: process.env.PATH,
      SHOAL_LOG_LEVEL: 'error',
      SHOAL_SWARM_KEY: join(dir, 'swarm.key'),
      SHOAL_DATA_DIR: join(dir, 'data'),
      SHOAL_P2P_LISTEN: '/ip4/127.0.0.1/tcp/0',
      SHOAL_LISTEN: '127.0.0.1:0',
      SHOAL_DEFAULT_UPSTREAM: 'http://127.0.0.1:1',
    })
    assert.notEqual(res.status, 0)
    assert.match(res.stderr, /not a swarm key \(make one with: shoal keygen\)/)
  })
})

// ---------------------------------------------------------------------------------------------

describe("the init container's configure-containerd.sh", () => {
  const marker = '# Managed by Shoal'
  let dir: string
  let script: string
  let defaultList: string
  let mirror: string

  before(() => {
    const ms = rendered.base!
    const cm = one(ms, 'ConfigMap').data as Record<string, string>
    dir = join(work, 'init')
    mkdirSync(dir)
    script = join(dir, 'configure-containerd.sh')
    writeFileSync(script, cm['configure-containerd.sh']!)
    defaultList = join(dir, 'mirror-registries')
    writeFileSync(defaultList, cm['mirror-registries']!)
    const ds = one(ms, 'DaemonSet')
    mirror = containerEnv(container(ds, 'configure-containerd', true), { namespace: 'shoal' }).SHOAL_MIRROR!
  })

  function runScript(certsD: string, extra: Record<string, string> = {}, list = defaultList) {
    const r = spawnSync('sh', [script], {
      encoding: 'utf8',
      timeout: 10_000,
      env: {
        PATH: process.env.PATH,
        SHOAL_CERTS_D: certsD,
        SHOAL_MIRROR: mirror,
        SHOAL_REGISTRIES_FILE: list,
        SHOAL_UID: String(process.getuid?.() ?? 0),
        SHOAL_GID: String(process.getgid?.() ?? 0),
        ...extra,
      },
    })
    assert.equal(r.status, 0, r.stderr)
    return r.stderr
  }

  /** A TOML file as plain objects (smol-toml's tables have no prototype). */
  const toml = (path: string): Obj => JSON.parse(JSON.stringify(parseToml(readFileSync(path, 'utf8')))) as Obj
  const hosts = (certsD: string, name: string): Obj => toml(join(certsD, name, 'hosts.toml'))

  test('writes one hosts.toml per listed registry, like deploy/containerd/hosts.toml', () => {
    const certsD = join(dir, 'c1')
    const data = join(dir, 'data1')
    runScript(certsD, { SHOAL_HOST_DATA_DIR: data })
    const example = toml(join(ROOT, 'deploy/containerd/hosts.toml'))
    assert.deepEqual(hosts(certsD, 'docker.io'), example)
    assert.deepEqual(hosts(certsD, 'ghcr.io'), { ...example, server: 'https://ghcr.io' })
    assert.deepEqual(hosts(certsD, 'registry.k8s.io'), { ...example, server: 'https://registry.k8s.io' })
    assert.deepEqual(Object.keys((example as { host: Obj }).host), [mirror])
    // The cache directory, handed to the daemon's user, closed to others.
    assert.equal(statSync(data).mode & 0o777, 0o750)
  })

  test('leaves files it did not write alone, removes its own when unlisted, and is idempotent', () => {
    const certsD = join(dir, 'c2')
    mkdirSync(join(certsD, 'quay.io'), { recursive: true })
    const foreign = 'server = "https://quay.io"\n[host."https://mirror.corp"]\n  capabilities = ["pull"]\n'
    writeFileSync(join(certsD, 'quay.io/hosts.toml'), foreign)
    mkdirSync(join(certsD, 'old.example'))
    writeFileSync(join(certsD, 'old.example/hosts.toml'), `${marker} (configure-containerd.sh)\nserver = "x"\n`)

    const log = runScript(certsD)
    assert.equal(readFileSync(join(certsD, 'quay.io/hosts.toml'), 'utf8'), foreign)
    assert.match(log, /quay\.io\/hosts\.toml was not written by Shoal: left alone/)
    assert.throws(() => statSync(join(certsD, 'old.example')), /ENOENT/)
    const first = readFileSync(join(certsD, 'docker.io/hosts.toml'), 'utf8')
    runScript(certsD)
    assert.equal(readFileSync(join(certsD, 'docker.io/hosts.toml'), 'utf8'), first)

    runScript(certsD, { SHOAL_OVERWRITE: 'true' })
    assert.equal(hosts(certsD, 'quay.io').server, 'https://quay.io')
    assert.match(readFileSync(join(certsD, 'quay.io/hosts.toml'), 'utf8'), new RegExp(`^${marker}`))
  })

  test('takes NAME=SERVER, _default, and refuses names that are not registry names', () => {
    const certsD = join(dir, 'c3')
    const custom = join(dir, 'custom-list')
    writeFileSync(
      custom,
      [
        '# comment',
        'registry.local:5000=http://registry.local:5000  # plain HTTP',
        '_default',
        '../escape',
        '*',
        'bad"name',
        'evil.example=file:///etc/passwd',
      ].join('\n'),
    )
    const log = runScript(certsD, {}, custom)
    assert.equal(hosts(certsD, 'registry.local:5000').server, 'http://registry.local:5000')
    const dflt = hosts(certsD, '_default')
    assert.equal(dflt.server, undefined)
    assert.deepEqual(Object.keys(dflt.host as Obj), [mirror])
    const written = spawnSync('find', [certsD, '-name', 'hosts.toml'], { encoding: 'utf8' }).stdout.trim().split('\n')
    assert.equal(written.length, 2, written.join('\n'))
    assert.match(log, /skipping a bad registry name: \.\.\/escape/)
    assert.match(log, /skipping evil\.example: server must be an http/)
    assert.throws(() => statSync(join(dir, 'escape')), /ENOENT/)
  })

  test('fails on a mirror that is not a URL', () => {
    const r = spawnSync('sh', [script], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, SHOAL_CERTS_D: join(dir, 'c4'), SHOAL_MIRROR: '127.0.0.1:5000' },
    })
    assert.equal(r.status, 2)
    assert.match(r.stderr, /SHOAL_MIRROR must be an http/)
  })
})
