// retailstream dashboard: polls the JSON API and redraws in place (no reload, no libraries).
//
// Every figure shown is also kept raw in a data-* attribute (data-value, data-revenue...),
// so tests and tools can read exactly what the page shows and compare it with the API.
// Options in the URL: ?refresh_ms=2000 (poll period), #token=... (API token, needed when
// the server protects queries; kept in sessionStorage, never sent anywhere but this API).
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(window.location.search);
  const REFRESH_MS = Math.max(250, Number(params.get("refresh_ms")) || 2000);
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
                   "#ca8a04", "#db2777", "#4b5563", "#65a30d"];
  const money = new Intl.NumberFormat("en-US", { style: "currency", currency: "EUR" });
  const count = new Intl.NumberFormat("en-US");

  const hashToken = new URLSearchParams(window.location.hash.slice(1)).get("token");
  if (hashToken) sessionStorage.setItem("retailstream.token", hashToken);
  const token = sessionStorage.getItem("retailstream.token");

  const $ = (id) => document.getElementById(id);
  const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function html(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showEmpty(testId, empty) {
    byTestId(testId).hidden = !empty;
  }

  function setFigure(id, value, format) {
    const node = $(id);
    node.dataset.value = String(value);
    node.textContent = format(value);
  }

  // A stable colour per region, whatever order the regions come in.
  function colour(name) {
    let hash = 0;
    for (const ch of name) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
    return PALETTE[hash % PALETTE.length];
  }

  function hhmm(iso) {
    return typeof iso === "string" && iso.length >= 16 ? iso.slice(11, 16) : "";
  }

  async function getJSON(path) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    const answer = await fetch(path, { headers, cache: "no-store" });
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) {
      throw new Error(`${path}: ${answer.status} ${body.error || ""} ${body.detail || ""}`.trim());
    }
    return body;
  }

  // --- panels -------------------------------------------------------------------------

  function renderTotals(regions, stores) {
    const total = regions.total || { revenue: 0, orders: 0, units: 0 };
    setFigure("total-revenue", total.revenue, (v) => money.format(v));
    setFigure("total-orders", total.orders, (v) => count.format(v));
    setFigure("total-units", total.units, (v) => count.format(v));
    const online = (stores.stores || []).find((s) => s.store_id === "ONLINE");
    setFigure("online-revenue", online ? online.revenue : 0, (v) => money.format(v));
  }

  function renderMap(payload) {
    const map = $("store-map");
    const located = (payload.stores || []).filter(
      (s) => typeof s.lat === "number" && typeof s.lon === "number");
    const sold = located.some((s) => s.revenue > 0);
    showEmpty("map-empty", !sold);
    map.dataset.empty = String(located.length === 0);
    if (located.length === 0) {
      map.replaceChildren();
      return;
    }
    // Equirectangular projection of the stores' bounding box, longitudes shrunk by cos(lat).
    const W = 600, H = 420, PAD = 30;
    const lats = located.map((s) => s.lat), lons = located.map((s) => s.lon);
    const [minLat, maxLat] = [Math.min(...lats), Math.max(...lats)];
    const [minLon, maxLon] = [Math.min(...lons), Math.max(...lons)];
    const kx = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
    const spanX = Math.max((maxLon - minLon) * kx, 1e-6), spanY = Math.max(maxLat - minLat, 1e-6);
    const scale = Math.min((W - 2 * PAD) / spanX, (H - 2 * PAD) / spanY);
    const x0 = (W - spanX * scale) / 2, y0 = (H - spanY * scale) / 2;
    const maxRevenue = Math.max(...located.map((s) => s.revenue), 0);
    const project = (s) => [x0 + (s.lon - minLon) * kx * scale, y0 + (maxLat - s.lat) * scale];
    // One label per city (several stores may share one), under the circles.
    const cities = new Map();
    for (const s of located) if (s.city && !cities.has(s.city)) cities.set(s.city, project(s));
    const labels = [...cities.entries()].map(([city, [cx, cy]]) =>
      svg("text", { class: "tick", x: (cx + 6).toFixed(1), y: (cy - 6).toFixed(1) }, city));
    const circles = located
      .slice()
      .sort((a, b) => b.revenue - a.revenue) // small circles drawn last, on top
      .map((s) => {
        const r = maxRevenue > 0 ? 3 + 17 * Math.sqrt(s.revenue / maxRevenue) : 3;
        const [cx, cy] = project(s);
        const circle = svg("circle", {
          class: s.revenue > 0 ? "store" : "store idle",
          cx: cx.toFixed(1),
          cy: cy.toFixed(1),
          r: r.toFixed(1),
          "data-testid": "store-circle",
          "data-store-id": s.store_id,
          "data-revenue": s.revenue,
          "data-orders": s.orders,
        });
        circle.append(svg("title", {}, `${s.store_id} ${s.city || ""} (${s.region || ""}): ` +
          `${money.format(s.revenue)}, ${count.format(s.orders)} orders`));
        return circle;
      });
    map.replaceChildren(...labels, ...circles);
  }

  function renderRegions(payload) {
    const chart = $("region-chart"), legend = $("region-legend");
    const windows = payload.windows || [];
    const regions = payload.regions || [];
    const empty = windows.length === 0 || regions.length === 0;
    showEmpty("regions-empty", empty);
    chart.dataset.empty = String(empty);
    if (empty) {
      chart.replaceChildren();
      legend.replaceChildren();
      return;
    }
    const W = 600, H = 300, L = 60, R = 10, T = 10, B = 30;
    const top = Math.max(1, ...regions.flatMap((r) => r.series.map((p) => p.revenue)));
    const x = (i) => L + (windows.length === 1 ? (W - L - R) / 2 : i * (W - L - R) / (windows.length - 1));
    const y = (v) => T + (H - T - B) * (1 - v / top);
    const nodes = [
      svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
      svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
      svg("text", { class: "tick", x: L - 6, y: T + 10, "text-anchor": "end" }, money.format(top)),
      svg("text", { class: "tick", x: L - 6, y: H - B, "text-anchor": "end" }, "0"),
      svg("text", { class: "tick", x: L, y: H - 10 }, hhmm(windows[0].window_start)),
      svg("text", { class: "tick", x: W - R, y: H - 10, "text-anchor": "end" },
        hhmm(windows[windows.length - 1].window_start)),
    ];
    for (const region of regions) {
      const points = region.series.map((p, i) => `${x(i).toFixed(1)},${y(p.revenue).toFixed(1)}`);
      nodes.push(svg("polyline", {
        class: "series", points: points.join(" "), stroke: colour(region.region),
        "data-region": region.region,
      }));
      if (windows.length === 1) {
        nodes.push(svg("circle", { cx: x(0), cy: y(region.series[0].revenue), r: 4,
          fill: colour(region.region) }));
      }
    }
    chart.replaceChildren(...nodes);
    legend.replaceChildren(...regions.map((region) => {
      const item = html("li", { "data-region": region.region, "data-revenue": region.revenue });
      const swatch = html("span", { class: "swatch" });
      swatch.style.background = colour(region.region);
      item.append(swatch, `${region.region} ${money.format(region.revenue)}`);
      return item;
    }));
  }

  function renderTrending(payload) {
    const list = $("trending-list");
    const items = payload.items || [];
    showEmpty("trending-empty", items.length === 0);
    const groups = new Map();
    for (const item of items) {
      if (!groups.has(item.category)) groups.set(item.category, []);
      groups.get(item.category).push(item);
    }
    list.replaceChildren(...[...groups.entries()].map(([category, entries]) => {
      const block = html("div", { class: "category", "data-category": category });
      const ol = html("ol");
      ol.append(...entries.map((item) => {
        const li = html("li", {
          "data-testid": "trending-item", "data-sku": item.sku, "data-category": category,
          "data-rank": item.rank, "data-score": item.score,
        }, `${item.name || item.sku} `);
        li.append(html("span", { class: "score" },
          `${count.format(item.add_to_cart)} to cart · ${count.format(item.ordered_units)} sold`));
        return li;
      }));
      block.append(html("h3", {}, category), ol);
      return block;
    }));
  }

  const stars = (n) => "★".repeat(n) + "☆".repeat(5 - n);

  function renderRatings(payload) {
    const best = payload.best_rated || [];
    const newest = payload.newest || [];
    setFigure("ratings-count", payload.ratings || 0, (v) => count.format(v));
    showEmpty("ratings-empty", best.length === 0 && newest.length === 0);
    $("best-rated-list").replaceChildren(...best.map((item) => {
      const li = html("li", {
        "data-testid": "best-rated-item", "data-sku": item.sku,
        "data-average": item.average_stars, "data-count": item.ratings_count,
      }, `${item.name || item.sku} `);
      li.append(html("span", { class: "score" },
        `${Number(item.average_stars).toFixed(2)} ★ · ${count.format(item.ratings_count)} ratings`));
      return li;
    }));
    $("newest-ratings-list").replaceChildren(...newest.map((rating) => {
      const li = html("li", {
        "data-testid": "newest-rating", "data-event-id": rating.event_id, "data-sku": rating.sku,
        "data-stars": rating.stars,
      }, `${rating.name || rating.sku}: `);
      li.append(html("span", { class: "on-hand", title: `${rating.stars} of 5` }, stars(rating.stars)),
        ` by ${rating.customer_id}`);
      return li;
    }));
  }

  function renderLowStock(payload) {
    const items = payload.items || [];
    setFigure("low-stock-count", payload.count || 0, (v) => count.format(v));
    showEmpty("low-stock-empty", items.length === 0);
    $("low-stock-list").replaceChildren(...items.map((item) => {
      const li = html("li", {
        "data-testid": "low-stock-item", "data-store-id": item.store_id, "data-sku": item.sku,
        "data-on-hand": item.on_hand,
      }, `${item.store_id} · ${item.name || item.sku} (${item.sku}): `);
      li.append(html("span", { class: item.on_hand > 0 ? "on-hand" : "on-hand zero" },
        `${count.format(item.on_hand)} on hand`));
      return li;
    }));
  }

  // Disruption alerts, most likely first: the shipment, how likely late, why, and where
  // the affected skus could come from instead.
  function renderDisruptions(payload) {
    const items = payload.items || [];
    setFigure("disruption-count", payload.count || 0, (v) => count.format(v));
    showEmpty("disruptions-empty", items.length === 0);
    $("disruption-list").replaceChildren(...items.map((item) => {
      const probability = Number(item.probability || 0);
      const li = html("li", {
        "data-testid": "disruption-item", "data-shipment-id": item.shipment_id || "",
        "data-probability": probability, title: item.summary || "",
      });
      li.append(
        html("span", { class: "on-hand" }, `${Math.round(probability * 100)}% late`),
        ` ${item.shipment_id} → ${item.destination_store_id || "?"}`,
        html("div", { class: "why" }, (item.reasons || []).join("; ") || "combination of conditions"),
      );
      const moves = (item.skus || []).filter((s) => s.source_kind && s.source_kind !== "none");
      li.append(html("div", { class: "why", "data-testid": "disruption-reroute" }, moves.length
        ? "reroute " + moves.slice(0, 3).map((s) => `${s.sku} ×${s.quantity} from ${s.source_id}`).join(", ")
          + (moves.length > 3 ? " …" : "")
        : "no spare stock nearby"));
      return li;
    }));
  }

  function seconds(value) {
    if (value === null || value === undefined) return "–";
    if (value === 0) return "0 s";
    if (value < 1) return `${Math.round(value * 1000)} ms`;
    if (value < 120) return `${Math.round(value)} s`;
    if (value < 7200) return `${Math.round(value / 60)} min`;
    return `${(value / 3600).toFixed(1)} h`;
  }

  // Each stream's lag behind its sources and its last batch, and the one-line verdict.
  function renderPipeline(payload) {
    const verdict = $("pipeline-verdict");
    verdict.textContent = payload.verdict || "";
    verdict.dataset.healthy = String(Boolean(payload.healthy));
    verdict.className = payload.healthy ? "verdict ok" : "verdict wrong";
    $("pipeline-streams").replaceChildren(...(payload.streams || []).map((stream) => {
      const report = stream.report || {};
      const tr = html("tr", {
        "data-testid": "pipeline-stream", "data-name": stream.name,
        "data-lag-records": stream.lag_records, "data-lag-seconds": stream.lag_seconds,
        class: stream.behind || stream.silent ? "wrong" : "",
      });
      const pace = report.batch_ms === undefined ? "–"
        : `${seconds(report.batch_ms / 1000)} / ${seconds((report.trigger_ms || 0) / 1000)}`;
      tr.append(
        html("td", {}, stream.name),
        html("td", { class: "num" }, count.format(stream.lag_records)),
        html("td", { class: "num" }, seconds(stream.lag_seconds)),
        html("td", { class: "num" }, pace),
        html("td", { class: "num" }, report.processed_rows_per_s === undefined ? "–"
          : count.format(Math.round(report.processed_rows_per_s))),
      );
      return tr;
    }));
  }

  // --- the loop ---------------------------------------------------------------------------

  let refreshes = 0;

  async function refresh() {
    const [regions, stores, trending, ratings, lowStock, disruptions, pipeline] =
      await Promise.allSettled([
        getJSON("/v1/sales/regions?windows=30"),
        getJSON("/v1/sales/stores"),
        getJSON("/v1/trending?limit=5"),
        getJSON("/v1/ratings?limit=5"),
        getJSON("/v1/alerts/low-stock?limit=25"),
        getJSON("/v1/alerts/disruptions"),
        getJSON("/v1/pipeline"),
      ]);
    const failures = [];
    const apply = (result, render) => {
      if (result.status !== "fulfilled") return failures.push(result.reason.message);
      try {
        render(result.value);
      } catch (error) {
        failures.push(String(error));
      }
    };
    if (regions.status === "fulfilled" && stores.status === "fulfilled") {
      apply(regions, (value) => renderTotals(value, stores.value));
    }
    apply(regions, renderRegions);
    apply(stores, renderMap);
    apply(trending, renderTrending);
    apply(ratings, renderRatings);
    apply(lowStock, renderLowStock);
    apply(disruptions, renderDisruptions);
    apply(pipeline, renderPipeline);

    const status = $("status");
    status.dataset.state = failures.length ? "error" : "ok";
    status.textContent = failures.length ? "API error" : "live";
    status.title = failures.join("\n");
    const results = [regions, stores, trending, ratings, lowStock, disruptions, pipeline];
    if (results.some((result) => result.status === "fulfilled")) {
      const now = new Date();
      const updated = $("last-updated");
      updated.dateTime = now.toISOString();
      updated.dataset.epochMs = String(now.getTime());
      updated.textContent = now.toLocaleTimeString();
    }
    refreshes += 1;
    document.body.dataset.refreshes = String(refreshes);
  }

  async function loop() {
    try {
      await refresh();
    } finally {
      window.setTimeout(loop, REFRESH_MS); // after the previous refresh: never overlapping
    }
  }

  loop();
})();
