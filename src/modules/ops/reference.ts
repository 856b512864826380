/**
 * A self-contained API reference page rendered from the OpenAPI document,
 * served at /redoc. It needs no script from another host, so it works on a
 * shop's closed network as well as on the internet.
 */
interface Operation {
  summary?: string;
  description?: string;
  tags?: string[];
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: unknown; description?: string }>;
  requestBody?: { content?: Record<string, { schema?: unknown }> };
  responses?: Record<string, { description?: string; content?: Record<string, { schema?: unknown }> }>;
}

interface OpenApiDoc {
  info: { title: string; version: string; description?: string };
  paths: Record<string, Record<string, Operation>>;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function schemaBlock(schema: unknown): string {
  return schema === undefined ? '' : `<pre>${esc(JSON.stringify(schema, null, 2))}</pre>`;
}

function renderOperation(path: string, method: string, op: Operation): string {
  const params = (op.parameters ?? [])
    .map((p) => `<li><code>${esc(p.name)}</code> (${esc(p.in)}${p.required ? ', required' : ''})</li>`)
    .join('');
  const body = Object.entries(op.requestBody?.content ?? {})
    .map(([type, c]) => `<h4>Body: ${esc(type)}</h4>${schemaBlock(c.schema)}`)
    .join('');
  const responses = Object.entries(op.responses ?? {})
    .map(([status, r]) => {
      const content = Object.values(r.content ?? {})[0];
      return `<details><summary>${esc(status)} ${esc(r.description ?? '')}</summary>${schemaBlock(content?.schema)}</details>`;
    })
    .join('');
  return `<section id="${esc(method + path)}"><h3><span class="m ${method}">${method.toUpperCase()}</span> <code>${esc(path)}</code></h3>
<p>${esc(op.summary ?? '')}</p>${op.description ? `<p>${esc(op.description)}</p>` : ''}
${params ? `<h4>Parameters</h4><ul>${params}</ul>` : ''}${body}${responses ? `<h4>Responses</h4>${responses}` : ''}</section>`;
}

/** The page declares an empty icon (`data:,`): otherwise browsers ask for /favicon.ico, which Kiln does not serve, and log its 404. */
export function renderReference(doc: OpenApiDoc): string {
  const sections = Object.entries(doc.paths)
    .flatMap(([path, ops]) => METHODS.filter((m) => ops[m]).map((m) => renderOperation(path, m, ops[m] as Operation)))
    .join('\n');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(doc.info.title)} API reference</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
section{border-top:1px solid #ddd;padding:.5rem 0}pre{background:#f6f6f6;padding:.5rem;overflow:auto;font-size:12px}
.m{display:inline-block;min-width:4.5rem;text-align:center;border-radius:4px;color:#fff;font-size:13px;padding:1px 6px}
.get{background:#2b7a3d}.post{background:#1f5fa8}.put{background:#a86b1f}.patch{background:#7a4fa8}.delete{background:#a8321f}</style>
</head><body><h1>${esc(doc.info.title)} ${esc(doc.info.version)}</h1><p>${esc(doc.info.description ?? '')}</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> · interactive: <a href="/docs">/docs</a></p>
${sections}</body></html>`;
}
