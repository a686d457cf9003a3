import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { ShoalError } from '../../../src/errors.js'
import { readDockerConfig } from '../../../src/origin/credentials.js'

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64')

let dir: string
let n = 0
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shoal-unit-creds-'))
})
after(async () => {
  await rm(dir, { recursive: true, force: true })
})

async function configFile(content: unknown): Promise<string> {
  const path = join(dir, `config-${n++}.json`)
  await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content))
  return path
}

describe('readDockerConfig', () => {
  test('auth is base64 user:password; the password may hold colons', async () => {
    const path = await configFile({ auths: { 'ghcr.io': { auth: b64('alice:pa:ss') } } })
    assert.deepEqual([...readDockerConfig(path)], [['ghcr.io', { username: 'alice', password: 'pa:ss' }]])
  })

  test('username and password fields', async () => {
    const path = await configFile({ auths: { 'quay.io': { username: 'bob', password: 'pw' } } })
    assert.deepEqual(readDockerConfig(path).get('quay.io'), { username: 'bob', password: 'pw' })
  })

  test('an empty auth falls back to the username and password fields', async () => {
    const path = await configFile({ auths: { 'quay.io': { auth: '', username: 'bob', password: 'pw' } } })
    assert.deepEqual(readDockerConfig(path).get('quay.io'), { username: 'bob', password: 'pw' })
  })

  test('the https://index.docker.io/v1/ key is Docker Hub (registry-1.docker.io)', async () => {
    const path = await configFile({ auths: { 'https://index.docker.io/v1/': { auth: b64('hub:tok') } } })
    const creds = readDockerConfig(path)
    assert.deepEqual([...creds.keys()], ['registry-1.docker.io'])
    assert.deepEqual(creds.get('registry-1.docker.io'), { username: 'hub', password: 'tok' })
  })

  test('docker.io and index.docker.io keys are Docker Hub too', async () => {
    for (const key of ['docker.io', 'index.docker.io', 'registry-1.docker.io']) {
      const path = await configFile({ auths: { [key]: { auth: b64('u:p') } } })
      assert.deepEqual([...readDockerConfig(path).keys()], ['registry-1.docker.io'], key)
    }
  })

  test('URL keys become host[:port]; host:port keys stay', async () => {
    const path = await configFile({
      auths: {
        'http://localhost:5000/v2/': { auth: b64('a:1') },
        'registry.example.com:8443': { auth: b64('b:2') },
        'https://r.example.com': { auth: b64('c:3') },
        'r2.example.com/some/path': { auth: b64('d:4') },
      },
    })
    const creds = readDockerConfig(path)
    assert.deepEqual([...creds.keys()].sort(), [
      'localhost:5000',
      'r.example.com',
      'r2.example.com',
      'registry.example.com:8443',
    ])
    assert.deepEqual(creds.get('localhost:5000'), { username: 'a', password: '1' })
  })

  test('entries without usable credentials are skipped', async () => {
    const path = await configFile({
      auths: {
        'a.io': {},
        'b.io': { auth: b64('nocolon') },
        'c.io': { auth: b64(':onlypassword') },
        'd.io': { username: 'u' },
        'e.io': 'string',
        'f.io': null,
        'g.io': { identitytoken: 'tok' },
        'ok.io': { auth: b64('u:p') },
      },
    })
    assert.deepEqual([...readDockerConfig(path).keys()], ['ok.io'])
  })

  test('no auths (credential helpers only, or an empty object) gives an empty map', async () => {
    assert.equal(readDockerConfig(await configFile({ credsStore: 'desktop' })).size, 0)
    assert.equal(readDockerConfig(await configFile({})).size, 0)
    assert.equal(readDockerConfig(await configFile({ auths: 'x' })).size, 0)
    assert.equal(readDockerConfig(await configFile([])).size, 0)
    assert.equal(readDockerConfig(await configFile('42')).size, 0)
  })

  test('a missing file or invalid JSON is CONFIG_INVALID naming dockerConfig and the path', async () => {
    const missing = join(dir, 'missing.json')
    const bad = await configFile('{not json')
    for (const path of [missing, bad]) {
      assert.throws(
        () => readDockerConfig(path),
        (err: unknown) =>
          err instanceof ShoalError &&
          err.code === 'CONFIG_INVALID' &&
          err.message.includes('dockerConfig') &&
          err.message.includes(path),
      )
    }
  })

  test('bug: a config.json holding JSON null throws a TypeError', async () => {
    // `42` and `[]` give an empty map; `null` reaches `(doc).auths` and throws
    // "Cannot read properties of null" instead.
    const path = await configFile('null')
    assert.equal(readDockerConfig(path).size, 0)
  })
})
