import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { ShoalError } from '../../../src/errors.js'
import {
  canonicalRegistryHost,
  DOCKER_HUB_HOSTS,
  isTag,
  parseImageReference,
  upstreamName,
  validateName,
} from '../../../src/oci/reference.js'

const DIGEST = `sha256:${'ab'.repeat(32)}`

function assertNameInvalid(fn: () => unknown, label: string): void {
  assert.throws(fn, (err: unknown) => err instanceof ShoalError && err.code === 'NAME_INVALID', label)
}

describe('validateName', () => {
  test('accepts names of the distribution grammar', () => {
    const good = [
      'a',
      'ubuntu',
      'library/ubuntu',
      'my-org/my-app',
      'a/b/c/d',
      'a.b',
      'a_b',
      'a__b',
      'a--b',
      'a---b',
      'x0/y1.z2',
      '0',
      'a'.repeat(255),
    ]
    for (const name of good) assert.equal(validateName(name), name, name)
  })

  test('refuses names outside it with NAME_INVALID/400', () => {
    const bad = [
      '',
      'Ubuntu',
      '-a',
      'a-',
      'a.',
      '.a',
      'a..b',
      'a___b',
      'a._b',
      '/a',
      'a/',
      'a//b',
      'a/../b',
      'a b',
      'a:b',
      'a@b',
      'ä',
      'a'.repeat(256),
    ]
    for (const name of bad) {
      assert.throws(
        () => validateName(name),
        (err: unknown) => err instanceof ShoalError && err.code === 'NAME_INVALID' && err.status === 400,
        JSON.stringify(name),
      )
    }
  })

  test('the error message truncates a long name', () => {
    assert.throws(
      () => validateName('A'.repeat(1000)),
      (err: unknown) => err instanceof Error && err.message.length < 120 && err.message.endsWith('…'),
    )
  })
})

describe('isTag', () => {
  test('tag grammar: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}', () => {
    for (const t of ['latest', 'v1.2.3', '1', '_x', 'A-b_c.D', 'a'.repeat(128)]) assert.equal(isTag(t), true, t)
    for (const t of ['', '.x', '-x', 'a/b', 'a:b', 'a@b', 'a b', 'a'.repeat(129)]) assert.equal(isTag(t), false, t)
  })
})

describe('canonicalRegistryHost', () => {
  test('Docker Hub aliases map to registry-1.docker.io', () => {
    assert.deepEqual([...DOCKER_HUB_HOSTS].sort(), ['docker.io', 'index.docker.io', 'registry-1.docker.io'])
    for (const h of DOCKER_HUB_HOSTS) assert.equal(canonicalRegistryHost(h), 'registry-1.docker.io')
  })

  test('other hosts stay as given', () => {
    assert.equal(canonicalRegistryHost('ghcr.io'), 'ghcr.io')
    assert.equal(canonicalRegistryHost('localhost:5000'), 'localhost:5000')
    assert.equal(canonicalRegistryHost('mirror.docker.io'), 'mirror.docker.io')
  })
})

describe('upstreamName', () => {
  test('one-segment Docker Hub names get library/', () => {
    assert.equal(upstreamName('docker.io', 'ubuntu'), 'library/ubuntu')
    assert.equal(upstreamName('index.docker.io', 'ubuntu'), 'library/ubuntu')
    assert.equal(upstreamName('registry-1.docker.io', 'ubuntu'), 'library/ubuntu')
  })

  test('multi-segment names and other registries are unchanged', () => {
    assert.equal(upstreamName('docker.io', 'library/ubuntu'), 'library/ubuntu')
    assert.equal(upstreamName('docker.io', 'bitnami/redis'), 'bitnami/redis')
    assert.equal(upstreamName('ghcr.io', 'ubuntu'), 'ubuntu')
    assert.equal(upstreamName('localhost:5000', 'app'), 'app')
  })
})

describe('parseImageReference', () => {
  test('a bare name is Docker Hub library/<name>:latest', () => {
    assert.deepEqual(parseImageReference('ubuntu'), { registry: 'docker.io', name: 'library/ubuntu', tag: 'latest' })
  })

  test('name:tag and user/name', () => {
    assert.deepEqual(parseImageReference('ubuntu:22.04'), {
      registry: 'docker.io',
      name: 'library/ubuntu',
      tag: '22.04',
    })
    assert.deepEqual(parseImageReference('bitnami/redis:7'), {
      registry: 'docker.io',
      name: 'bitnami/redis',
      tag: '7',
    })
  })

  test('explicit Docker Hub hosts keep the library/ mapping', () => {
    assert.deepEqual(parseImageReference('docker.io/ubuntu'), {
      registry: 'docker.io',
      name: 'library/ubuntu',
      tag: 'latest',
    })
    assert.deepEqual(parseImageReference('index.docker.io/library/ubuntu:24.04'), {
      registry: 'index.docker.io',
      name: 'library/ubuntu',
      tag: '24.04',
    })
  })

  test('a first segment with a dot, a port or localhost is a registry', () => {
    assert.deepEqual(parseImageReference('ghcr.io/org/app:v1'), { registry: 'ghcr.io', name: 'org/app', tag: 'v1' })
    assert.deepEqual(parseImageReference('localhost:5000/app:dev'), {
      registry: 'localhost:5000',
      name: 'app',
      tag: 'dev',
    })
    assert.deepEqual(parseImageReference('localhost/app'), { registry: 'localhost', name: 'app', tag: 'latest' })
    assert.deepEqual(parseImageReference('127.0.0.1:5000/a/b/c'), {
      registry: '127.0.0.1:5000',
      name: 'a/b/c',
      tag: 'latest',
    })
  })

  test('a first segment without dot, port or localhost is part of the name', () => {
    assert.deepEqual(parseImageReference('myorg/app'), { registry: 'docker.io', name: 'myorg/app', tag: 'latest' })
  })

  test('digests, with or without a tag', () => {
    assert.deepEqual(parseImageReference(`ubuntu@${DIGEST}`), {
      registry: 'docker.io',
      name: 'library/ubuntu',
      digest: DIGEST,
    })
    assert.deepEqual(parseImageReference(`ghcr.io/org/app:v1@${DIGEST}`), {
      registry: 'ghcr.io',
      name: 'org/app',
      tag: 'v1',
      digest: DIGEST,
    })
    assert.deepEqual(parseImageReference(`localhost:5000/app@${DIGEST}`), {
      registry: 'localhost:5000',
      name: 'app',
      digest: DIGEST,
    })
  })

  test('a default registry other than Docker Hub gets no library/', () => {
    assert.deepEqual(parseImageReference('app', 'registry.example.com'), {
      registry: 'registry.example.com',
      name: 'app',
      tag: 'latest',
    })
  })

  test('invalid names and tags are NAME_INVALID', () => {
    assertNameInvalid(() => parseImageReference('Ubuntu'), 'uppercase')
    assertNameInvalid(() => parseImageReference(''), 'empty')
    assertNameInvalid(() => parseImageReference('ubuntu:'), 'empty tag')
    assertNameInvalid(() => parseImageReference('ubuntu:.bad'), 'tag starting with a dot')
    assertNameInvalid(() => parseImageReference(`ubuntu:${'a'.repeat(129)}`), 'tag too long')
    assertNameInvalid(() => parseImageReference('ghcr.io/'), 'registry only')
    assertNameInvalid(() => parseImageReference('a//b'), 'empty segment')
  })

  test('bug: an invalid digest after @ is accepted', () => {
    // `shoal pull ubuntu@latest` would then ask the daemon for manifests/latest: a tag, not a digest.
    for (const input of ['ubuntu@latest', 'ubuntu@sha256:abc', `ubuntu@${DIGEST.toUpperCase()}`, 'ubuntu@']) {
      assert.throws(
        () => parseImageReference(input),
        (err: unknown) => err instanceof ShoalError && (err.code === 'DIGEST_INVALID' || err.code === 'NAME_INVALID'),
        input,
      )
    }
  })
})
