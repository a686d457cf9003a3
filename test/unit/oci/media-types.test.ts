import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  DOCKER_LIST,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_V1_SIGNED,
  MANIFEST_ACCEPT,
  MANIFEST_TYPES,
  OCI_INDEX,
  OCI_MANIFEST,
  sniffManifestType,
} from '../../../src/oci/media-types.js'

const json = (v: unknown): Uint8Array => Buffer.from(JSON.stringify(v))

describe('media type constants', () => {
  test('the registered media type strings', () => {
    assert.equal(OCI_INDEX, 'application/vnd.oci.image.index.v1+json')
    assert.equal(OCI_MANIFEST, 'application/vnd.oci.image.manifest.v1+json')
    assert.equal(DOCKER_LIST, 'application/vnd.docker.distribution.manifest.list.v2+json')
    assert.equal(DOCKER_MANIFEST, 'application/vnd.docker.distribution.manifest.v2+json')
    assert.equal(DOCKER_MANIFEST_V1_SIGNED, 'application/vnd.docker.distribution.manifest.v1+prettyjws')
  })

  test('Accept lists the four manifest types, indexes first', () => {
    assert.deepEqual(MANIFEST_ACCEPT.split(', '), [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
  })

  test('MANIFEST_TYPES holds the four, not schema 1', () => {
    assert.equal(MANIFEST_TYPES.size, 4)
    for (const t of [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST]) assert.ok(MANIFEST_TYPES.has(t))
    assert.equal(MANIFEST_TYPES.has(DOCKER_MANIFEST_V1_SIGNED), false)
  })
})

describe('sniffManifestType', () => {
  test('the mediaType field wins', () => {
    assert.equal(sniffManifestType(json({ schemaVersion: 2, mediaType: DOCKER_MANIFEST, layers: [] })), DOCKER_MANIFEST)
    assert.equal(sniffManifestType(json({ schemaVersion: 2, mediaType: DOCKER_LIST, manifests: [] })), DOCKER_LIST)
  })

  test('without mediaType: manifests means an OCI index, schemaVersion 2 an OCI manifest', () => {
    assert.equal(sniffManifestType(json({ schemaVersion: 2, manifests: [] })), OCI_INDEX)
    assert.equal(sniffManifestType(json({ schemaVersion: 2, config: {}, layers: [] })), OCI_MANIFEST)
  })

  test('unknown shapes and non-JSON give undefined', () => {
    assert.equal(sniffManifestType(json({ schemaVersion: 1, fsLayers: [] })), undefined)
    assert.equal(sniffManifestType(json({ mediaType: 5 })), undefined)
    assert.equal(sniffManifestType(json(null)), undefined)
    assert.equal(sniffManifestType(json('text')), undefined)
    assert.equal(sniffManifestType(Buffer.from('not json')), undefined)
    assert.equal(sniffManifestType(new Uint8Array(0)), undefined)
  })
})
