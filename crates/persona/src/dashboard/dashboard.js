// persona's dashboard: the server's health and throughput from /readyz and /metrics (no
// token needed), and with the admin token the segments, models and webhooks, and a profile
// lookup. Everything is read from the public API; nothing is sent anywhere else. Text from
// the server is set as text (never as HTML), since names and traits come from customers.
'use strict'

const SAMPLE_MS = 2000
const WINDOW = 150 // samples: 5 minutes
const samples = [] // [time in ms, appended records]
let token = sessionStorage.getItem('persona-admin-token') || ''

const $ = (id) => document.getElementById(id)
const fmt = (n) => (n == null || Number.isNaN(n) ? '–' : Math.round(n).toLocaleString('en'))

// The sum of every sample of a counter or gauge (all label sets) in Prometheus text.
function metric(text, name) {
  let sum = null
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const rest = line.slice(name.length)
    if (rest[0] !== ' ' && rest[0] !== '{') continue
    const value = Number(line.slice(line.lastIndexOf(' ') + 1))
    if (!Number.isNaN(value)) sum = (sum || 0) + value
  }
  return sum
}

// The ingestion routes' label values: the dashboard's own polling of the admin API must
// not be what the p99 card measures.
const INGEST = /path="(\/v1\/(track|identify|page|screen|group|alias|batch|[tipsgab]|import)|\/beacon\/v1\/batch)"/

// Cumulative histogram buckets of the ingestion routes (summed): upper bound -> count.
function buckets(text, name) {
  const out = new Map()
  const prefix = name + '_bucket{'
  for (const line of text.split('\n')) {
    if (!line.startsWith(prefix) || !INGEST.test(line)) continue
    const le = /le="([^"]+)"/.exec(line)
    if (!le) continue
    const bound = le[1] === '+Inf' ? Infinity : Number(le[1])
    out.set(bound, (out.get(bound) || 0) + Number(line.slice(line.lastIndexOf(' ') + 1)))
  }
  return out
}

let lastBuckets = null
const bucketHistory = [] // [time, buckets] for the p99 over the last 10 s

function p99Since(now, current) {
  while (bucketHistory.length && now - bucketHistory[0][0] > 10000) bucketHistory.shift()
  bucketHistory.push([now, current])
  const [, old] = bucketHistory[0]
  const bounds = [...current.keys()].sort((a, b) => a - b)
  const total = (current.get(Infinity) || 0) - (old.get(Infinity) || 0)
  if (total <= 0) return null
  for (const b of bounds) {
    if ((current.get(b) || 0) - (old.get(b) || 0) >= 0.99 * total) return b
  }
  return null
}

function drawChart(now) {
  const rates = [] // [time, events/s]
  for (let i = 1; i < samples.length; i++) {
    const [t0, r0] = samples[i - 1]
    const [t1, r1] = samples[i]
    rates.push([t1, Math.max(0, (r1 - r0) / ((t1 - t0) / 1000))])
  }
  const peak = Math.max(1, ...rates.map(([, r]) => r))
  // Placed by time, so that a throttled tab's missed samples leave a gap, not a squeeze.
  const points = rates.map(([t, r]) => {
    const x = 600 - ((now - t) / (WINDOW * SAMPLE_MS)) * 600
    return `${Math.max(0, x).toFixed(1)},${(118 - (r / peak) * 112).toFixed(1)}`
  })
  $('line').setAttribute('points', points.join(' '))
  // The area under the line, closed along the bottom edge.
  $('area').setAttribute('points', points.length
    ? `${points[0].split(',')[0]},120 ${points.join(' ')} 600,120` : '')
  $('peak').textContent = `peak ${fmt(peak)}/s`
  $('rate').textContent = rates.length ? fmt(rates[rates.length - 1][1]) : '–'
}

async function health() {
  const now = Date.now()
  try {
    const [ready, metrics] = await Promise.all([
      fetch('/readyz').then((r) => r.json()),
      fetch('/metrics').then((r) => r.text()),
    ])
    $('status').textContent = ready.status === 'ready' ? 'ready' : 'not ready'
    $('status').className = 'pill ' + ready.status
    $('problems').textContent = (ready.problems || []).join('; ')
    $('records').textContent = fmt(ready.log && ready.log.next_offset)
    const p = ready.processor || {}
    $('lag').textContent = p.lag_records == null ? '–'
      : `${fmt(p.lag_records)} events, ${Number(p.lag_seconds || 0).toFixed(1)} s`
    const appended = metric(metrics, 'persona_log_appended_records_total')
    if (appended != null) {
      samples.push([now, appended])
      while (samples.length && now - samples[0][0] > WINDOW * SAMPLE_MS) samples.shift()
    }
    drawChart(now)
    const p99 = p99Since(now, buckets(metrics, 'persona_http_request_duration_seconds'))
    $('p99').textContent = p99 == null ? '–' : p99 === Infinity ? 'over the largest bucket'
      : `≤ ${(p99 * 1000).toLocaleString('en')} ms`
  } catch (e) {
    $('status').textContent = 'unreachable'
    $('status').className = 'pill down'
    $('problems').textContent = String(e)
  }
}

async function admin(path) {
  const r = await fetch(path, { headers: { Authorization: `Bearer ${token}` } })
  const body = await r.json().catch(() => ({}))
  if (r.status === 401) throw new Error('the admin token was refused')
  if (!r.ok) throw new Error((body.error && body.error.message) || `${path} answered ${r.status}`)
  return body
}

// Fills a table body with one row per item; each cell is text (or a number, right-aligned).
function fill(id, items, cells) {
  const body = $(id).querySelector('tbody')
  if (!items.length) {
    const td = document.createElement('td')
    td.colSpan = $(id).querySelectorAll('th').length
    td.className = 'none'
    td.textContent = 'none yet'
    const tr = document.createElement('tr')
    tr.append(td)
    body.replaceChildren(tr)
    return
  }
  body.replaceChildren(...items.map((item) => {
    const tr = document.createElement('tr')
    for (const value of cells(item)) {
      const td = document.createElement('td')
      if (typeof value === 'number') td.className = 'num'
      td.textContent = typeof value === 'number' ? fmt(value) : value == null ? '' : String(value)
      tr.append(td)
    }
    return tr
  }))
}

async function refreshAdmin() {
  if (!token) return
  try {
    const [segments, models, webhooks] = await Promise.all([
      admin('/v1/segments'), admin('/v1/models'), admin('/v1/webhooks'),
    ])
    $('login').hidden = true
    $('admin').hidden = false
    fill('segments', segments.segments, (s) => [s.id, s.name, s.members, s.rule,
      s.backfill && s.backfill.state, (s.warnings || []).join(' ')])
    fill('models', models.models || [], (m) => [m.id, m.name, m.version, m.status, m.active ? 'yes' : ''])
    fill('webhooks', webhooks.webhooks, (w) => [w.id, w.url, w.events.join(', '), w.delivery.state,
      w.delivery.delivered, w.delivery.behind,
      w.disabled_reason || (w.delivery.last_error && w.delivery.last_error.message)])
    $('admin-error').textContent = ''
  } catch (e) {
    // Shown where the reader is: the sign-in form, or above the tables.
    $('token-error').textContent = e.message
    $('admin-error').textContent = e.message
    if (e.message.includes('refused')) signOut()
  }
}

function signOut() {
  token = ''
  sessionStorage.removeItem('persona-admin-token')
  $('login').hidden = false
  $('admin').hidden = true
}

$('token-form').addEventListener('submit', (e) => {
  e.preventDefault()
  token = $('token').value.trim()
  $('token-error').textContent = ''
  sessionStorage.setItem('persona-admin-token', token)
  refreshAdmin()
})
$('sign-out').addEventListener('click', signOut)
$('lookup-form').addEventListener('submit', async (e) => {
  e.preventDefault()
  const key = $('lookup').value.trim()
  if (!key) return
  try {
    const profile = await admin(`/v1/profiles/${encodeURIComponent(key)}`)
    $('profile').textContent = JSON.stringify(profile, null, 2)
  } catch (err) {
    $('profile').textContent = err.message
  }
})

health()
setInterval(health, SAMPLE_MS)
refreshAdmin()
// Segment reads estimate the over-segmentation warnings, which costs the server some work.
setInterval(refreshAdmin, 15000)
