/**
 * Manifests against the Kubernetes API schemas, from the kubernetes-models package: its JSON
 * schema validation (types, required fields, enums), and, because those schemas let unknown fields
 * through (a misspelt `livenesProbe` would be dropped by the API server without a word), a
 * TypeScript check of every manifest as an object literal of the package's interface, whose
 * excess-property check names every unknown field.
 */
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DaemonSet } from 'kubernetes-models/apps/v1'
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from 'kubernetes-models/v1'
import ts from 'typescript'
import type { Manifest } from './kustomize.js'

interface Validatable {
  validate(): void
}

/** The kinds deploy/kubernetes uses: model class, and the module and interface of its type. */
const MODELS: Record<string, { make: (m: Manifest) => Validatable; module: string; iface: string }> = {
  'v1/Namespace': {
    make: (m) => new Namespace(m as never),
    module: 'kubernetes-models/v1/Namespace',
    iface: 'INamespace',
  },
  'v1/ServiceAccount': {
    make: (m) => new ServiceAccount(m as never),
    module: 'kubernetes-models/v1/ServiceAccount',
    iface: 'IServiceAccount',
  },
  'v1/ConfigMap': {
    make: (m) => new ConfigMap(m as never),
    module: 'kubernetes-models/v1/ConfigMap',
    iface: 'IConfigMap',
  },
  'v1/Secret': { make: (m) => new Secret(m as never), module: 'kubernetes-models/v1/Secret', iface: 'ISecret' },
  'v1/Service': { make: (m) => new Service(m as never), module: 'kubernetes-models/v1/Service', iface: 'IService' },
  'apps/v1/DaemonSet': {
    make: (m) => new DaemonSet(m as never),
    module: 'kubernetes-models/apps/v1/DaemonSet',
    iface: 'IDaemonSet',
  },
}

/** Schema errors of every manifest, as "Kind/name: message" lines (empty when all are valid). */
export function schemaErrors(manifests: Manifest[]): string[] {
  const errors: string[] = []
  for (const m of manifests) {
    const model = MODELS[`${m.apiVersion}/${m.kind}`]
    if (model === undefined) {
      errors.push(`${m.kind}/${m.metadata.name}: ${m.apiVersion} ${m.kind} is not a kind the tests know`)
      continue
    }
    try {
      model.make(m).validate()
    } catch (err) {
      errors.push(`${m.kind}/${m.metadata.name}: ${(err as Error).message}`)
    }
  }
  return errors
}

const here = dirname(fileURLToPath(import.meta.url))

/**
 * Type errors of the manifests as object literals of kubernetes-models' interfaces: unknown
 * fields, wrong types, wrong enum strings. One TypeScript program for all of them (a few seconds).
 */
export function typeErrors(manifests: Manifest[]): string[] {
  // A virtual file next to this one, so that `kubernetes-models` resolves from the project.
  const file = join(here, '__manifests__.ts')
  const lines: string[] = []
  manifests.forEach((m, i) => {
    const model = MODELS[`${m.apiVersion}/${m.kind}`]
    if (model === undefined) return
    lines.push(`import type { ${model.iface} as T${i} } from '${model.module}'`)
    lines.push(`// ${m.kind}/${m.metadata.name}`)
    lines.push(`export const m${i}: T${i} = ${JSON.stringify(m, null, 2)}`)
  })
  const source = lines.join('\n')
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest)
  const fileExists = host.fileExists.bind(host)
  host.fileExists = (name) => name === file || fileExists(name)
  const readFile = host.readFile.bind(host)
  host.readFile = (name) => (name === file ? source : readFile(name))
  const program = ts.createProgram({ rootNames: [file], options, host })
  const sf = program.getSourceFile(file)
  return ts.getPreEmitDiagnostics(program, sf).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n')
    if (d.file === undefined || d.start === undefined) return text
    const { line } = d.file.getLineAndCharacterOfPosition(d.start)
    const src = source.split('\n')
    // The nearest "// Kind/name" comment above the error names the manifest.
    let owner = ''
    for (let l = line; l >= 0; l--) {
      const c = /^\/\/ (.+)$/.exec(src[l] ?? '')
      if (c !== null) {
        owner = c[1]!
        break
      }
    }
    return `${owner}: ${text} (at: ${(src[line] ?? '').trim()})`
  })
}
