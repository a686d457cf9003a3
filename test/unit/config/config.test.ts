import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { envConfig, LOG_LEVELS, type RawConfig, readConfigFile, resolveConfig } from '../../../src/config/config.js'
import { ShoalError } from '../../../src/errors.js'

/** Asserts a CONFIG_INVALID error whose message contains every given fragment. */
function assertInvalid(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ShoalError, `expected a ShoalError, got ${String(err)}`)
    assert.equal(err.code, 'CONFIG_INVALID')
    for (const f of fragments) assert.ok(err.message.includes(f), `"${err.message}" should contain ${f}`)
    return true
  })
}

const fromFile = (file: RawConfig) => resolveConfig({ file })

let dir: string
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-unit-config-'))
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('resolveConfig defaults', () => {
  test('no sources gives the documented defaults', () => {
    const c = resolveConfig({})
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 5000 })
    assert.equal(c.dataDir, resolve('./.shoal'))
    assert.equal(c.defaultUpstream.href, 'https://registry-1.docker.io/')
    assert.equal(c.logLevel, 'info')
    assert.equal(c.tagTtlMs, 30_000)
    assert.deepEqual(c.registries, [])
    assert.deepEqual(c.swarm, { listen: [], bootstrap: [], mdns: false, maxConnections: 200, encryption: ['noise'] })
    for (const k of ['adminListen', 'dockerConfig', 'cacheMax', 'uploadRate', 'originRate', 'maxOriginRequests']) {
      assert.equal(k in c, false, `${k} is unset by default`)
    }
    assert.equal('swarmKey' in c.swarm, false)
  })

  test('null values in the file (empty YAML keys) mean the default', () => {
    const c = fromFile({ listen: null, tagTtl: null, registries: null, bootstrap: null })
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 5000 })
    assert.equal(c.tagTtlMs, 30_000)
    assert.deepEqual(c.registries, [])
    assert.deepEqual(c.swarm.bootstrap, [])
  })
})

describe('resolveConfig precedence', () => {
  test('flags > env > file', () => {
    const c = resolveConfig({
      file: { listen: '127.0.0.1:1001', tagTtl: '1s', logLevel: 'warn' },
      env: { listen: '127.0.0.1:1002', tagTtl: '2s' },
      flags: { listen: '127.0.0.1:1003' },
    })
    assert.equal(c.listen.port, 1003)
    assert.equal(c.tagTtlMs, 2000)
    assert.equal(c.logLevel, 'warn')
  })

  test('undefined flags and env values do not hide lower sources', () => {
    const c = resolveConfig({
      file: { listen: '127.0.0.1:1001', dataDir: '/tmp/from-file' },
      env: { listen: undefined, dataDir: '/tmp/from-env' },
      flags: { listen: undefined, dataDir: undefined },
    })
    assert.equal(c.listen.port, 1001)
    assert.equal(c.dataDir, '/tmp/from-env')
  })

  test('envConfig reads SHOAL_* variables, ignoring empty ones and others', () => {
    const env = envConfig({
      SHOAL_LISTEN: '0.0.0.0:6000',
      SHOAL_DATA_DIR: '/data',
      SHOAL_DEFAULT_UPSTREAM: 'https://mirror.example',
      SHOAL_LOG_LEVEL: 'debug',
      SHOAL_TAG_TTL: '5m',
      SHOAL_DOCKER_CONFIG: '',
      SHOAL_P2P_LISTEN: '/ip4/0.0.0.0/tcp/4001',
      SHOAL_BOOTSTRAP: 'dns:shoal:4001,/ip4/10.0.0.1/tcp/4001',
      SHOAL_MDNS: 'true',
      SHOAL_MAX_CONNECTIONS: '50',
      SHOAL_CACHE_MAX: '80%',
      SHOAL_UPLOAD_RATE: '10MiB/s',
      SHOAL_ORIGIN_RATE: '20MiB/s',
      SHOAL_MAX_ORIGIN_REQUESTS: '8',
      SHOAL_ADMIN_LISTEN: '127.0.0.1:9090',
      SHOAL_SWARM_KEY: '/etc/shoal/swarm.key',
      SHOAL_UNKNOWN: 'x',
      PATH: '/usr/bin',
    })
    assert.deepEqual(env, {
      listen: '0.0.0.0:6000',
      dataDir: '/data',
      defaultUpstream: 'https://mirror.example',
      logLevel: 'debug',
      tagTtl: '5m',
      p2pListen: '/ip4/0.0.0.0/tcp/4001',
      bootstrap: 'dns:shoal:4001,/ip4/10.0.0.1/tcp/4001',
      mdns: 'true',
      maxConnections: '50',
      cacheMax: '80%',
      uploadRate: '10MiB/s',
      originRate: '20MiB/s',
      maxOriginRequests: '8',
      adminListen: '127.0.0.1:9090',
      swarmKey: '/etc/shoal/swarm.key',
    })
    const c = resolveConfig({ env })
    assert.deepEqual(c.listen, { host: '0.0.0.0', port: 6000 })
    assert.equal(c.tagTtlMs, 300_000)
    assert.equal(c.logLevel, 'debug')
    assert.deepEqual(c.swarm.bootstrap, ['dns:shoal:4001', '/ip4/10.0.0.1/tcp/4001'])
    assert.equal(c.swarm.mdns, true)
    assert.equal(c.swarm.maxConnections, 50)
    assert.deepEqual(c.cacheMax, { percent: 80 })
    assert.equal(c.uploadRate, 10 * 1024 ** 2)
    assert.equal(c.originRate, 20 * 1024 ** 2)
    assert.equal(c.maxOriginRequests, 8)
    assert.deepEqual(c.adminListen, { host: '127.0.0.1', port: 9090 })
    assert.equal(c.swarm.swarmKey, '/etc/shoal/swarm.key')
  })
})

describe('resolveConfig validation', () => {
  test('an unknown file key is rejected, naming it', () => {
    assertInvalid(() => fromFile({ lsiten: '127.0.0.1:5000' }), 'unknown key "lsiten"', 'listen')
    assertInvalid(() => fromFile({ tag_ttl: '30s' }), '"tag_ttl"')
  })

  test('errors name the key and the bad value', () => {
    assertInvalid(() => fromFile({ listen: 'nowhere' }), 'listen', '"nowhere"')
    assertInvalid(() => fromFile({ adminListen: '127.0.0.1:99999' }), 'adminListen', '"127.0.0.1:99999"')
    assertInvalid(() => fromFile({ dataDir: '' }), 'dataDir', '""')
    assertInvalid(() => fromFile({ defaultUpstream: 'ftp://x' }), 'defaultUpstream', '"ftp://x"')
    assertInvalid(() => fromFile({ tagTtl: 'soon' }), 'tagTtl', '"soon"')
    assertInvalid(() => fromFile({ mdns: 'maybe' }), 'mdns', '"maybe"')
    assertInvalid(() => fromFile({ swarmKey: '' }), 'swarmKey', '""')
    assertInvalid(() => fromFile({ dockerConfig: 7 }), 'dockerConfig', '7')
  })

  test('a bad value from the environment is reported like one from the file', () => {
    assertInvalid(() => resolveConfig({ env: envConfig({ SHOAL_TAG_TTL: 'later' }) }), 'tagTtl', '"later"')
  })

  test('logLevel is one of the levels', () => {
    for (const level of LOG_LEVELS) assert.equal(fromFile({ logLevel: level }).logLevel, level)
    assertInvalid(() => fromFile({ logLevel: 'verbose' }), 'logLevel', '"verbose"', 'one of fatal, error')
    assertInvalid(() => fromFile({ logLevel: 3 }), 'logLevel', '3')
  })

  test('tagTtl takes durations and bare seconds', () => {
    assert.equal(fromFile({ tagTtl: '1500ms' }).tagTtlMs, 1500)
    assert.equal(fromFile({ tagTtl: 10 }).tagTtlMs, 10_000)
  })

  test('maxConnections and maxOriginRequests are positive whole numbers', () => {
    assert.equal(fromFile({ maxConnections: 10 }).swarm.maxConnections, 10)
    assert.equal(fromFile({ maxOriginRequests: '3' }).maxOriginRequests, 3)
    assertInvalid(() => fromFile({ maxConnections: 0 }), 'maxConnections', '0')
    assertInvalid(() => fromFile({ maxConnections: '1.5' }), 'maxConnections', '"1.5"')
    assertInvalid(() => fromFile({ maxConnections: 'many' }), 'maxConnections', '"many"')
    assertInvalid(() => fromFile({ maxOriginRequests: -2 }), 'maxOriginRequests', '-2')
  })

  test('cacheMax: a size above zero or a percentage in (0, 100]', () => {
    assert.deepEqual(fromFile({ cacheMax: '50GiB' }).cacheMax, { bytes: 50 * 1024 ** 3 })
    assert.deepEqual(fromFile({ cacheMax: 1000 }).cacheMax, { bytes: 1000 })
    assert.deepEqual(fromFile({ cacheMax: '80%' }).cacheMax, { percent: 80 })
    assert.deepEqual(fromFile({ cacheMax: ' 12.5 % ' }).cacheMax, { percent: 12.5 })
    assert.deepEqual(fromFile({ cacheMax: '100%' }).cacheMax, { percent: 100 })
    assertInvalid(() => fromFile({ cacheMax: '0%' }), 'cacheMax', '"0%"')
    assertInvalid(() => fromFile({ cacheMax: '150%' }), 'cacheMax', '"150%"')
    assertInvalid(() => fromFile({ cacheMax: '0' }), 'cacheMax', '"0"')
    assertInvalid(() => fromFile({ cacheMax: 'half' }), 'cacheMax', '"half"')
  })

  test('rates: sizes with or without /s, above zero', () => {
    assert.equal(fromFile({ uploadRate: '100MiB/s' }).uploadRate, 100 * 1024 ** 2)
    assert.equal(fromFile({ uploadRate: '100MiB' }).uploadRate, 100 * 1024 ** 2)
    assert.equal(fromFile({ originRate: 5000 }).originRate, 5000)
    assertInvalid(() => fromFile({ uploadRate: '0/s' }), 'uploadRate', '"0/s"')
    assertInvalid(() => fromFile({ originRate: 'fast' }), 'originRate', '"fast"')
  })

  test('p2pListen: multiaddrs from a list or a comma-separated string; the bad one is named by index', () => {
    assert.deepEqual(fromFile({ p2pListen: ['/ip4/0.0.0.0/tcp/4001', '/ip6/::/tcp/4001'] }).swarm.listen, [
      '/ip4/0.0.0.0/tcp/4001',
      '/ip6/::/tcp/4001',
    ])
    assert.deepEqual(fromFile({ p2pListen: ' /ip4/0.0.0.0/tcp/4001 , ' }).swarm.listen, ['/ip4/0.0.0.0/tcp/4001'])
    assertInvalid(
      () => fromFile({ p2pListen: ['/ip4/0.0.0.0/tcp/4001', '0.0.0.0:4001'] }),
      'p2pListen[1]',
      '"0.0.0.0:4001"',
    )
    assertInvalid(() => fromFile({ p2pListen: '/ip4/0.0.0.0/udp/4001' }), 'p2pListen[0]')
    assertInvalid(() => fromFile({ p2pListen: [4001] }), 'p2pListen', '[4001]')
  })

  test('bootstrap: multiaddrs (with or without /p2p/), dns:NAME:PORT, and /dns4 names become dns:', () => {
    const id = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
    const c = fromFile({
      bootstrap: [
        `/ip4/10.0.0.1/tcp/4001/p2p/${id}`,
        '/ip4/10.0.0.2/tcp/4001',
        'dns:shoal-headless.default.svc:4001',
        '/dns4/shoal/tcp/4001',
        '/dns/shoal2/tcp/4002',
        `/dns4/peer.example/tcp/4001/p2p/${id}`,
      ],
    })
    assert.deepEqual(c.swarm.bootstrap, [
      `/ip4/10.0.0.1/tcp/4001/p2p/${id}`,
      '/ip4/10.0.0.2/tcp/4001',
      'dns:shoal-headless.default.svc:4001',
      'dns:shoal:4001',
      'dns:shoal2:4002',
      `/dns4/peer.example/tcp/4001/p2p/${id}`,
    ])
    assertInvalid(() => fromFile({ bootstrap: ['dns:shoal'] }), 'bootstrap[0]', '"dns:shoal"')
    assertInvalid(() => fromFile({ bootstrap: ['dns:shoal:4001', 'http://peer'] }), 'bootstrap[1]', '"http://peer"')
  })

  test('paths: relative ones are resolved, ~/ is the home directory', () => {
    const c = fromFile({ dataDir: 'rel/data', swarmKey: '~/swarm.key', dockerConfig: '~/.docker/config.json' })
    assert.equal(c.dataDir, resolve('rel/data'))
    assert.equal(c.swarm.swarmKey, join(homedir(), 'swarm.key'))
    assert.equal(c.dockerConfig, join(homedir(), '.docker/config.json'))
  })
})

describe('resolveConfig registries', () => {
  test('host, url, credentials, insecure', () => {
    const c = fromFile({
      registries: [
        { host: 'registry.example.com', url: 'https://mirror.example.com', username: 'u', password: 'p' },
        { host: '127.0.0.1:5399', url: 'http://127.0.0.1:5311', insecure: 'true' },
      ],
    })
    assert.equal(c.registries.length, 2)
    const [a, b] = c.registries
    assert.equal(a?.host, 'registry.example.com')
    assert.equal(a?.url.href, 'https://mirror.example.com/')
    assert.equal(a?.username, 'u')
    assert.equal(a?.password, 'p')
    assert.equal(a?.insecure, false)
    assert.equal(b?.host, '127.0.0.1:5399')
    assert.equal(b?.url.href, 'http://127.0.0.1:5311/')
    assert.equal(b?.insecure, true)
    assert.equal(b !== undefined && 'username' in b, false)
  })

  test('url defaults to https://<host>', () => {
    const [r] = fromFile({ registries: [{ host: 'ghcr.io' }] }).registries
    assert.equal(r?.url.href, 'https://ghcr.io/')
  })

  test('Docker Hub aliases are canonical, and two aliases of it are a duplicate', () => {
    const [r] = fromFile({ registries: [{ host: 'docker.io' }] }).registries
    assert.equal(r?.host, 'registry-1.docker.io')
    assert.equal(r?.url.href, 'https://registry-1.docker.io/')
    assertInvalid(
      () => fromFile({ registries: [{ host: 'docker.io' }, { host: 'index.docker.io' }] }),
      'registries[1].host',
      '"index.docker.io"',
    )
    assertInvalid(() => fromFile({ registries: [{ host: 'a.io' }, { host: 'a.io' }] }), 'registries[1].host', '"a.io"')
  })

  test('the list and its entries have the right shape', () => {
    assertInvalid(() => fromFile({ registries: { host: 'a.io' } }), 'registries', '{"host":"a.io"}')
    assertInvalid(() => fromFile({ registries: ['a.io'] }), 'registries[0]', '"a.io"')
    assertInvalid(() => fromFile({ registries: [null] }), 'registries[0]', 'null')
    assertInvalid(() => fromFile({ registries: [[]] }), 'registries[0]', '[]')
    assertInvalid(() => fromFile({ registries: [{ url: 'https://a.io' }] }), 'registries[0].host')
    assertInvalid(() => fromFile({ registries: [{ host: '' }] }), 'registries[0].host', '""')
  })

  test('an unknown key in an entry is named with the entry', () => {
    assertInvalid(() => fromFile({ registries: [{ host: 'a.io', user: 'x' }] }), 'registries[0]', 'unknown key "user"')
  })

  test('bad url, insecure, username and password values are named', () => {
    assertInvalid(
      () => fromFile({ registries: [{ host: 'a.io', url: 'ftp://a.io' }] }),
      'registries[0].url',
      '"ftp://a.io"',
    )
    assertInvalid(
      () => fromFile({ registries: [{ host: 'a.io', insecure: 'sure' }] }),
      'registries[0].insecure',
      '"sure"',
    )
    assertInvalid(
      () => fromFile({ registries: [{ host: 'a.io', username: '', password: 'p' }] }),
      'registries[0].username',
    )
  })

  test('username and password go together', () => {
    assertInvalid(() => fromFile({ registries: [{ host: 'a.io', username: 'u' }] }), 'registries[0]', 'together')
    assertInvalid(() => fromFile({ registries: [{ host: 'a.io', password: 'p' }] }), 'registries[0]', 'together')
  })

  test('caFile must be readable; it is resolved to an absolute path', async () => {
    const ca = join(dir, 'ca.pem')
    await writeFile(ca, '-----BEGIN CERTIFICATE-----\n')
    const [r] = fromFile({ registries: [{ host: 'a.io', caFile: ca }] }).registries
    assert.equal(r?.caFile, ca)
    const missing = join(dir, 'missing.pem')
    assertInvalid(() => fromFile({ registries: [{ host: 'a.io', caFile: missing }] }), 'registries[0].caFile', missing)
  })

  test('bug: a registries host that is a URL or has a path is accepted', () => {
    // `host` is the name clients use (containerd ?ns=, HOST[:PORT]); a scheme or a path can never
    // match a client request, so the entry is silently dead. It should be refused, naming it.
    assertInvalid(
      () => fromFile({ registries: [{ host: 'https://ghcr.io' }] }),
      'registries[0].host',
      '"https://ghcr.io"',
    )
    assertInvalid(() => fromFile({ registries: [{ host: 'ghcr.io/org' }] }), 'registries[0].host', '"ghcr.io/org"')
  })
})

describe('readConfigFile', () => {
  test('reads a YAML mapping', async () => {
    const path = join(dir, 'ok.yaml')
    await writeFile(path, 'listen: 127.0.0.1:7000\ntagTtl: 5m\nregistries:\n  - host: a.io\n    insecure: true\n')
    const raw = readConfigFile(path)
    assert.deepEqual(raw, { listen: '127.0.0.1:7000', tagTtl: '5m', registries: [{ host: 'a.io', insecure: true }] })
    const c = resolveConfig({ file: raw })
    assert.equal(c.listen.port, 7000)
    assert.equal(c.registries[0]?.insecure, true)
  })

  test('an empty file is an empty mapping', async () => {
    const path = join(dir, 'empty.yaml')
    await writeFile(path, '# nothing here\n')
    assert.deepEqual(readConfigFile(path), {})
  })

  test('a missing file, invalid YAML and a non-mapping document are refused, naming the path', async () => {
    const missing = join(dir, 'missing.yaml')
    assertInvalid(() => readConfigFile(missing), 'cannot read', missing)
    const bad = join(dir, 'bad.yaml')
    await writeFile(bad, 'listen: [unclosed\n')
    assertInvalid(() => readConfigFile(bad), 'not valid YAML', bad)
    const list = join(dir, 'list.yaml')
    await writeFile(list, '- a\n- b\n')
    assertInvalid(() => readConfigFile(list), 'must hold a mapping', list)
    const scalar = join(dir, 'scalar.yaml')
    await writeFile(scalar, 'just text\n')
    assertInvalid(() => readConfigFile(scalar), 'must hold a mapping', scalar)
  })

  test('the example config in deploy/ is valid', () => {
    const example = fileURLToPath(new URL('../../../../deploy/examples/config.yaml', import.meta.url))
    const c = resolveConfig({ file: readConfigFile(example) })
    assert.equal(c.listen.port, 5000)
    assert.equal(c.registries[0]?.host, 'registry.example.com')
  })
})

describe('resolveConfig p2pEncryption', () => {
  test('tls first keeps noise offered; unknown values and tls with a swarm key are refused', () => {
    assert.deepEqual(resolveConfig({ flags: { p2pEncryption: 'tls' } }).swarm.encryption, ['tls', 'noise'])
    assert.deepEqual(resolveConfig({ flags: { p2pEncryption: 'noise,tls' } }).swarm.encryption, ['noise', 'tls'])
    assert.throws(() => resolveConfig({ flags: { p2pEncryption: 'quic' } }), /p2pEncryption/)
    assert.throws(() => resolveConfig({ flags: { p2pEncryption: 'tls', swarmKey: '/k' } }), /p2pEncryption/)
    assert.deepEqual(resolveConfig({ flags: { swarmKey: '/k' } }).swarm.encryption, ['noise'])
  })
})
