import type { ConcurrencySeries, Method } from './cost.js';
import { METHOD_LABELS } from './cost.js';
import type { TransferHistories, WorkflowRole } from './history.js';
import { WORKFLOW_LABELS } from './history.js';
import type { BenchRow } from './types.js';

/** The table on the terminal, the markdown report, and the SVG plot of latency and throughput against concurrency. */

export function fmt(n: number | null | undefined): string {
  if (n == null || !Number.isFinite(n)) return '—';
  if (Number.isInteger(n)) return String(n);
  const a = Math.abs(n);
  if (a >= 100) return n.toFixed(0);
  if (a >= 10) return n.toFixed(1);
  if (a >= 1) return n.toFixed(2);
  return n.toPrecision(2);
}

const COLUMNS = ['goal', 'measure', 'ferry', 'baseline', 'ratio', 'unit', 'target'] as const;
const cells = (r: BenchRow): string[] => [r.goal, r.measure, fmt(r.ferry), fmt(r.baseline), r.ratio == null ? '—' : `${fmt(r.ratio)}×`, r.unit, r.target ?? ''];

export function textTable(rows: BenchRow[]): string {
  const all = [COLUMNS.map(String), ...rows.map(cells)];
  const widths = COLUMNS.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const numeric = new Set([2, 3, 4]);
  const line = (r: string[]) => r.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(all[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...all.slice(1).map(line)].join('\n');
}

const md = (s: string) => s.replace(/\|/g, '\\|');

export function markdownTable(rows: BenchRow[]): string {
  const head = `| ${[...COLUMNS, 'note'].join(' | ')} |\n|${[...COLUMNS, 'note'].map(() => '---').join('|')}|`;
  return [head, ...rows.map((r) => `| ${[...cells(r), r.note ?? ''].map(md).join(' | ')} |`)].join('\n');
}

/** Event types × the four workflows (and the minimal workflow), then activities, updates, signals by name. */
export function historyMarkdown(h: TransferHistories): string {
  const roles = Object.keys(WORKFLOW_LABELS) as WorkflowRole[];
  const table = (key: 'byType' | 'byName', title: string) => {
    const names = [...new Set([...roles.flatMap((r) => Object.keys(h.workflows[r][key])), ...Object.keys(h.minimal[key])])].sort();
    const head = `| ${title} | ${roles.map((r) => WORKFLOW_LABELS[r]).join(' | ')} | minimal workflow |\n|---|${roles.map(() => '---:').join('|')}|---:|`;
    const row = (n: string) => `| ${md(n)} | ${roles.map((r) => h.workflows[r][key][n] ?? 0).join(' | ')} | ${h.minimal[key][n] ?? 0} |`;
    return [head, ...names.map(row)].join('\n');
  };
  const totals = `| **total events** | ${roles.map((r) => `**${h.workflows[r].events}**`).join(' | ')} | **${h.minimal.events}** |`;
  return [`History of one tiny in-cluster push (${h.processId}), events by type:`, '', table('byType', 'event type'), totals, '', 'By name (activities scheduled, local-activity and other markers, accepted updates, signals, search attributes upserted):', '', table('byName', 'what')].join('\n');
}

const COLORS: Record<Method, string> = { ferry: '#d62728', minimal: '#1f77b4', four: '#2ca02c' };

/** Two panels, throughput and median latency against concurrency (log-log), one line per method. Plain SVG, no browser. */
export function concurrencySvg(data: ConcurrencySeries, title: string): string {
  const W = 960;
  const H = 420;
  const panel = { w: 380, h: 280, top: 70 };
  const lefts = [80, 560];
  const methods = Object.keys(data.series) as Method[];
  const lx = data.levels.map((c) => Math.log10(Math.max(1, c)));
  const [xmin, xmax] = [Math.min(...lx), Math.max(...lx)];
  const xOf = (left: number, c: number) => left + (xmax === xmin ? panel.w / 2 : ((Math.log10(Math.max(1, c)) - xmin) / (xmax - xmin)) * panel.w);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${esc(title)}</text>`,
  ];
  const panels: { key: 'throughput' | 'p50'; label: string }[] = [
    { key: 'throughput', label: 'throughput (completed items/s, log scale)' },
    { key: 'p50', label: 'latency of one item, median (ms, log scale)' },
  ];
  panels.forEach(({ key, label }, i) => {
    const left = lefts[i]!;
    // log scale: the methods differ by orders of magnitude
    const values = methods.flatMap((m) => data.series[m][key]).filter((v) => Number.isFinite(v) && v > 0);
    const lo = Math.floor(Math.log10(values.length ? Math.min(...values) : 1));
    const hi = Math.max(lo + 1, Math.ceil(Math.log10(values.length ? Math.max(...values) : 10)));
    const yOf = (v: number) => (v > 0 ? panel.top + panel.h - ((Math.log10(v) - lo) / (hi - lo)) * panel.h : NaN);
    out.push(`<text x="${left + panel.w / 2}" y="${panel.top - 14}" text-anchor="middle" font-size="13">${esc(label)}</text>`);
    out.push(`<rect x="${left}" y="${panel.top}" width="${panel.w}" height="${panel.h}" fill="none" stroke="#999"/>`);
    for (let k = lo; k <= hi; k++) {
      for (const m of [1, 2, 5]) {
        const v = m * 10 ** k;
        if (k === hi && m > 1) continue;
        const y = yOf(v);
        out.push(`<line x1="${left}" x2="${left + panel.w}" y1="${y}" y2="${y}" stroke="${m === 1 ? '#ddd' : '#f3f3f3'}"/>`);
        out.push(`<text x="${left - 6}" y="${y + 4}" text-anchor="end">${fmt(v)}</text>`);
      }
    }
    for (const c of data.levels) out.push(`<text x="${xOf(left, c)}" y="${panel.top + panel.h + 16}" text-anchor="middle">${c}</text>`);
    out.push(`<text x="${left + panel.w / 2}" y="${panel.top + panel.h + 34}" text-anchor="middle">concurrency (items in flight, log scale)</text>`);
    for (const m of methods) {
      const pts = data.levels.map((c, j) => [xOf(left, c), yOf(data.series[m][key][j]!)] as const).filter(([, y]) => Number.isFinite(y));
      out.push(`<polyline fill="none" stroke="${COLORS[m]}" stroke-width="2" points="${pts.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ')}"/>`);
      for (const [x, y] of pts) out.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3.5" fill="${COLORS[m]}"/>`);
    }
  });
  methods.forEach((m, i) => {
    const x = 80 + i * 290;
    out.push(`<rect x="${x}" y="${H - 26}" width="14" height="4" fill="${COLORS[m]}"/>`);
    out.push(`<text x="${x + 20}" y="${H - 20}">${esc(METHOD_LABELS[m])}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

