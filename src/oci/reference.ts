import { MAX_NAME_LENGTH } from '../constants.js'
import { ShoalError } from '../errors.js'
import { parseDigest, truncate } from './digest.js'

/**
 * Repository name grammar of the OCI distribution spec:
 * `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
 */
const NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/

export function validateName(name: string): string {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH || !NAME.test(name)) {
    throw new ShoalError('NAME_INVALID', `invalid repository name: ${truncate(name)}`, {
      status: 400,
    })
  }
  return name
}

export function isTag(ref: string): boolean {
  return TAG.test(ref)
}

export const DOCKER_HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io'])

/** `registry-1.docker.io` for Docker Hub aliases, otherwise the host as given. */
export function canonicalRegistryHost(host: string): string {
  return DOCKER_HUB_HOSTS.has(host) ? 'registry-1.docker.io' : host
}

/** Docker Hub names official images as `library/<name>`. */
export function upstreamName(registryHost: string, name: string): string {
  if (canonicalRegistryHost(registryHost) === 'registry-1.docker.io' && !name.includes('/')) {
    return `library/${name}`
  }
  return name
}

/** A parsed image reference as the CLI takes it: `[host[:port]/]name[:tag][@digest]`. */
export interface ImageReference {
  registry: string
  name: string
  tag?: string
  digest?: string
}

export function parseImageReference(input: string, defaultRegistry = 'docker.io'): ImageReference {
  let rest = input
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at !== -1) {
    digest = parseDigest(rest.slice(at + 1)).value
    rest = rest.slice(0, at)
  }
  let registry = defaultRegistry
  const slash = rest.indexOf('/')
  if (slash !== -1) {
    const first = rest.slice(0, slash)
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      registry = first
      rest = rest.slice(slash + 1)
    }
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon !== -1) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
  }
  const name = upstreamName(registry, validateName(rest))
  if (tag !== undefined && !isTag(tag)) {
    throw new ShoalError('NAME_INVALID', `invalid tag: ${truncate(tag)}`)
  }
  const ref: ImageReference = { registry, name }
  if (tag !== undefined) ref.tag = tag
  if (digest !== undefined) ref.digest = digest
  if (ref.tag === undefined && ref.digest === undefined) ref.tag = 'latest'
  return ref
}
