/**
 * A minimal kustomize for the tests of deploy/kubernetes: it renders exactly the features those
 * kustomizations use (resources, namespace, images, strategic-merge patches from files,
 * configMapGenerator/secretGenerator without name hashes) and throws on anything else, so that it
 * can never silently disagree with the real one. Where `kubectl` is installed, the tests also render
 * with `kubectl kustomize` and require the same result.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, statSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { parseAllDocuments } from 'yaml'

export type Obj = Record<string, unknown>

export interface Manifest extends Obj {
  apiVersion: string
  kind: string
  metadata: Obj & { name: string; namespace?: string; labels?: Record<string, string> }
}

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * Every document of a YAML file. Kubernetes reads YAML with YAML 1.1 rules (`yes`, `on`, `0440`
 * octal) and the `yaml` package with 1.2 rules: a file must mean the same under both.
 */
export function parseYamlDocs(text: string, file: string): unknown[] {
  const parse = (version: '1.1' | '1.2'): unknown[] =>
    parseAllDocuments(text, { version, uniqueKeys: true, prettyErrors: true }).map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`)
      return doc.toJS() as unknown
    })
  const v12 = parse('1.2').filter((d) => d !== null && d !== undefined)
  const v11 = parse('1.1').filter((d) => d !== null && d !== undefined)
  if (!isDeepStrictEqual(v11, v12)) {
    throw new Error(`${file}: means different things under YAML 1.1 (Kubernetes) and 1.2: quote the ambiguous scalars`)
  }
  return v12
}

export function loadManifests(file: string): Manifest[] {
  return parseYamlDocs(readFileSync(file, 'utf8'), file).map((doc, i) => {
    if (!isObj(doc) || typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string' || !isObj(doc.metadata)) {
      throw new Error(`${file}: document ${i} is not a Kubernetes object`)
    }
    if (typeof doc.metadata.name !== 'string') throw new Error(`${file}: document ${i} has no metadata.name`)
    return doc as Manifest
  })
}

export function resourceId(m: Pick<Manifest, 'kind' | 'metadata'>): string {
  return `${m.kind}/${m.metadata.namespace ?? ''}/${m.metadata.name}`
}

const KNOWN_FIELDS = new Set([
  'apiVersion',
  'kind',
  'resources',
  'namespace',
  'images',
  'patches',
  'configMapGenerator',
  'secretGenerator',
])

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'PriorityClass'])

/** Renders the kustomization in `dir` like `kubectl kustomize dir`. */
export function renderKustomization(dir: string): Manifest[] {
  const kfile = join(dir, 'kustomization.yaml')
  const [k] = parseYamlDocs(readFileSync(kfile, 'utf8'), kfile)
  if (!isObj(k)) throw new Error(`${kfile}: not a mapping`)
  for (const key of Object.keys(k)) {
    if (!KNOWN_FIELDS.has(key)) throw new Error(`${kfile}: "${key}" is not supported by the test renderer`)
  }

  let out: Manifest[] = []
  for (const r of asList(k.resources, `${kfile}: resources`)) {
    const path = resolve(dir, String(r))
    out.push(...(statSync(path).isDirectory() ? renderKustomization(path) : loadManifests(path)))
  }
  const ids = new Set<string>()
  for (const m of out) {
    if (ids.has(resourceId(m))) throw new Error(`${kfile}: ${resourceId(m)} listed twice`)
    ids.add(resourceId(m))
  }

  for (const [field, kind] of [
    ['configMapGenerator', 'ConfigMap'],
    ['secretGenerator', 'Secret'],
  ] as const) {
    for (const g of asList(k[field], `${kfile}: ${field}`)) out = applyGenerator(out, dir, kind, g, kfile)
  }

  for (const p of asList(k.patches, `${kfile}: patches`)) {
    if (!isObj(p) || typeof p.path !== 'string' || Object.keys(p).length !== 1) {
      throw new Error(`${kfile}: only patches given as {path: FILE} (strategic merge) are supported`)
    }
    for (const patch of loadManifests(resolve(dir, p.path))) {
      const targets = out.filter(
        (m) =>
          m.apiVersion === patch.apiVersion &&
          m.kind === patch.kind &&
          m.metadata.name === patch.metadata.name &&
          (patch.metadata.namespace === undefined || m.metadata.namespace === patch.metadata.namespace),
      )
      if (targets.length !== 1) throw new Error(`${p.path}: patch matches ${targets.length} resources, not 1`)
      const i = out.indexOf(targets[0]!)
      out[i] = strategicMerge(targets[0]!, patch, []) as Manifest
    }
  }

  if (k.namespace !== undefined) {
    const ns = String(k.namespace)
    out = out.map((m) => {
      const c = structuredClone(m)
      if (m.kind === 'Namespace') c.metadata.name = ns
      else if (!CLUSTER_SCOPED.has(m.kind)) c.metadata.namespace = ns
      return c
    })
  }

  for (const img of asList(k.images, `${kfile}: images`)) {
    if (!isObj(img) || typeof img.name !== 'string') throw new Error(`${kfile}: images entries need a name`)
    for (const key of Object.keys(img)) {
      if (!['name', 'newName', 'newTag', 'digest'].includes(key)) throw new Error(`${kfile}: images.${key} unsupported`)
    }
    for (const m of out) for (const c of podContainers(m)) c.image = retag(String(c.image), img)
  }
  return out
}

function asList(v: unknown, what: string): unknown[] {
  if (v === undefined) return []
  if (!Array.isArray(v)) throw new Error(`${what} must be a list`)
  return v
}

function applyGenerator(out: Manifest[], dir: string, kind: 'ConfigMap' | 'Secret', g: unknown, kfile: string) {
  if (!isObj(g) || typeof g.name !== 'string') throw new Error(`${kfile}: a generator without a name`)
  for (const key of Object.keys(g)) {
    if (!['name', 'namespace', 'behavior', 'files', 'literals', 'options', 'type'].includes(key)) {
      throw new Error(`${kfile}: generator field "${key}" unsupported`)
    }
  }
  const options = isObj(g.options) ? g.options : {}
  if (options.disableNameSuffixHash !== true || Object.keys(options).length !== 1) {
    throw new Error(`${kfile}: generator ${g.name}: only options.disableNameSuffixHash: true is supported`)
  }
  const data: Record<string, string> = {}
  for (const f of asList(g.files, 'files')) {
    const [key, path] = String(f).includes('=') ? String(f).split('=', 2) : [basename(String(f)), String(f)]
    const bytes = readFileSync(resolve(dir, path!))
    data[key!] = kind === 'Secret' ? bytes.toString('base64') : bytes.toString('utf8')
  }
  for (const l of asList(g.literals, 'literals')) {
    const s = String(l)
    const eq = s.indexOf('=')
    const value = s.slice(eq + 1)
    data[s.slice(0, eq)] = kind === 'Secret' ? Buffer.from(value).toString('base64') : value
  }
  const metadata: Manifest['metadata'] = { name: g.name }
  if (typeof g.namespace === 'string') metadata.namespace = g.namespace
  const generated: Manifest = { apiVersion: 'v1', kind, metadata, data }
  if (kind === 'Secret') generated.type = typeof g.type === 'string' ? g.type : 'Opaque'

  const behavior = g.behavior ?? 'create'
  const idx = out.findIndex(
    (m) => m.kind === kind && m.metadata.name === g.name && (m.metadata.namespace ?? '') === (metadata.namespace ?? ''),
  )
  if (behavior === 'create') {
    if (idx >= 0) throw new Error(`${kfile}: generator ${g.name} already exists`)
    return [...out, generated]
  }
  if (idx < 0) throw new Error(`${kfile}: generator ${g.name}: nothing to ${String(behavior)}`)
  const base = out[idx]!
  const merged = structuredClone(base)
  if (behavior === 'replace') {
    delete merged.stringData
    delete merged.binaryData
    merged.data = data
  } else if (behavior === 'merge') {
    merged.data = { ...(isObj(base.data) ? base.data : {}), ...data }
  } else {
    throw new Error(`${kfile}: generator behavior "${String(behavior)}" unsupported`)
  }
  const copy = [...out]
  copy[idx] = merged
  return copy
}

/** Merge keys of the lists this repo's manifests patch; other lists are replaced whole. */
function mergeKey(path: string[]): string | undefined {
  const field = path[path.length - 1]
  const parent = path[path.length - 2]
  if (field === 'containers' || field === 'initContainers' || field === 'env' || field === 'volumes') return 'name'
  if (field === 'volumeMounts') return 'mountPath'
  if (field === 'ports') return parent === 'spec' ? 'port' : 'containerPort'
  return undefined
}

/** Kubernetes' strategic merge, for maps and the lists with a merge key above. */
export function strategicMerge(base: unknown, patch: unknown, path: string[]): unknown {
  if (isObj(patch) && '$patch' in patch) throw new Error(`${path.join('.')}: $patch directives unsupported`)
  if (isObj(base) && isObj(patch)) {
    const out: Obj = { ...base }
    for (const [key, value] of Object.entries(patch)) {
      if (value === null) delete out[key]
      else out[key] = key in base ? strategicMerge(base[key], value, [...path, key]) : structuredClone(value)
    }
    return out
  }
  const key = mergeKey(path)
  if (Array.isArray(base) && Array.isArray(patch) && key !== undefined) {
    // As kustomize orders them: the patch's items first (merged into the base's item of the same
    // key, or new), in the patch's order, then the base's other items. So patching one `env`
    // entry moves it first: a $(VAR) it uses must be patched along with it.
    const out: unknown[] = []
    for (const item of patch) {
      if (!isObj(item) || !(key in item)) throw new Error(`${path.join('.')}: list items need "${key}"`)
      const b = base.find((x) => isObj(x) && x[key] === item[key])
      out.push(b === undefined ? structuredClone(item) : strategicMerge(b, item, [...path, String(item[key])]))
    }
    for (const b of base) {
      if (!patch.some((item) => isObj(item) && isObj(b) && item[key] === b[key])) out.push(structuredClone(b))
    }
    return out
  }
  return structuredClone(patch)
}

export function podSpec(m: Manifest): Obj | undefined {
  const spec = m.spec
  if (!isObj(spec) || !isObj(spec.template)) return undefined
  return isObj(spec.template.spec) ? spec.template.spec : undefined
}

export function podContainers(m: Manifest): Obj[] {
  const spec = podSpec(m)
  if (spec === undefined) return []
  return [...asList(spec.initContainers, 'initContainers'), ...asList(spec.containers, 'containers')].filter(isObj)
}

/** kustomize's `images` on one reference: name[:tag][@digest]. */
function retag(image: string, rule: Obj): string {
  const at = image.indexOf('@')
  const noDigest = at >= 0 ? image.slice(0, at) : image
  const colon = noDigest.lastIndexOf(':')
  const hasTag = colon > noDigest.lastIndexOf('/')
  const name = hasTag ? noDigest.slice(0, colon) : noDigest
  if (name !== rule.name) return image
  const newName = typeof rule.newName === 'string' ? rule.newName : name
  if (typeof rule.digest === 'string') return `${newName}@${rule.digest}`
  if (typeof rule.newTag === 'string') return `${newName}:${rule.newTag}`
  return `${newName}${image.slice(name.length)}`
}

/** `kubectl kustomize DIR`, or undefined when kubectl is not installed. */
export function kubectlKustomize(dir: string): Manifest[] | undefined {
  let text: string
  try {
    text = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new Error(`kubectl kustomize ${dir} failed: ${String((err as { stderr?: unknown }).stderr ?? err)}`)
  }
  return parseYamlDocs(text, `kubectl kustomize ${dir}`) as Manifest[]
}

/** For comparing two renderings: keyed by kind/namespace/name, Secret data without line breaks. */
export function normalized(ms: Manifest[]): Record<string, Manifest> {
  const out: Record<string, Manifest> = {}
  for (const m of ms) {
    const c = structuredClone(m)
    if (c.kind === 'Secret' && isObj(c.data)) {
      for (const [k, v] of Object.entries(c.data)) c.data[k] = String(v).replace(/\s+/g, '')
    }
    out[resourceId(c)] = c
  }
  return out
}
