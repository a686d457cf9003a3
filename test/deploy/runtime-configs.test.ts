/**
 * The example files for the runtimes and the daemon parse, and point where the daemon listens:
 * deploy/docker/daemon.json (JSON), deploy/containerd/hosts.toml and deploy/podman/registries.conf
 * (TOML), deploy/examples/config.yaml (the daemon's own config loader).
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { parse as parseToml } from 'smol-toml'
import { readConfigFile, resolveConfig } from '../../src/config/config.js'
import { ROOT } from './support.js'

const read = (rel: string): string => readFileSync(join(ROOT, rel), 'utf8')
/** TOML as plain objects (smol-toml's tables have no prototype). */
const toml = (rel: string): Record<string, unknown> =>
  JSON.parse(JSON.stringify(parseToml(read(rel)))) as Record<string, unknown>

// The example config and every runtime example agree on where the mirror is.
const example = resolveConfig({ file: readConfigFile(join(ROOT, 'deploy/examples/config.yaml')) })
const mirror = `${example.listen.host}:${example.listen.port}`

describe('deploy/ runtime examples', () => {
  test('deploy/examples/config.yaml is a valid daemon config', () => {
    assert.equal(mirror, '127.0.0.1:5000')
    assert.equal(example.dataDir, '/var/lib/shoal')
    assert.equal(example.defaultUpstream.href, 'https://registry-1.docker.io/')
    assert.ok(example.registries.length > 0, 'shows a registries entry')
  })

  test('deploy/docker/daemon.json mirrors Docker Hub through the daemon', () => {
    const json = JSON.parse(read('deploy/docker/daemon.json')) as Record<string, unknown>
    assert.deepEqual(json, { 'registry-mirrors': [`http://${mirror}`] })
  })

  test('deploy/containerd/hosts.toml: Docker Hub as the server, the daemon as a pull/resolve host', () => {
    assert.deepEqual(toml('deploy/containerd/hosts.toml'), {
      server: 'https://registry-1.docker.io',
      host: { [`http://${mirror}`]: { capabilities: ['pull', 'resolve'] } },
    })
  })

  test('deploy/podman/registries.conf: docker.io mirrored by the daemon over plain HTTP', () => {
    assert.deepEqual(toml('deploy/podman/registries.conf'), {
      registry: [
        {
          prefix: 'docker.io',
          location: 'registry-1.docker.io',
          mirror: [{ location: mirror, insecure: true }],
        },
      ],
    })
  })
})
