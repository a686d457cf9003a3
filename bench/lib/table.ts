/** Columns padded to their widest cell (the first left-aligned), a rule under the header row. */
export function layout(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((cells) => (cells[i] ?? '').length)))
  const lines = rows.map((cells) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(Math.max(widths[i] ?? 0, 8))))
      .join('   ')
      .trimEnd(),
  )
  lines.splice(1, 0, '-'.repeat(Math.max(...lines.map((l) => l.length))))
  return lines
}
