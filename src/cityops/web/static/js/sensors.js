// The sensors layer of the operations map: every located sensor (10,000 and more), clustered by
// Supercluster (from npm, global `Supercluster`; one k-d tree per zoom, built in tens of
// milliseconds) and drawn as DOM markers only for what the view shows — the clusters and single
// sensors in and around the map's bounds, redrawn after each move or zoom.
//
// Why not markercluster (still used for the incidents layer): it needs a marker object per
// sensor and builds its cluster tree marker by marker, in 14 distance grids; the first-load trace
// showed about half a second of main-thread time for 10,000 sensors, on the critical path of the
// screen. Here a sensor's marker (the shared icon per level, the popup built when opened) exists
// only once the sensor has been shown alone, and markers keep the same DOM as before
// (`.sensor-dot[title] span[data-level]`). Clusters look like markercluster's (its default CSS)
// and zoom in when clicked or when Enter is pressed on them.

const EXTENT = 256; // Leaflet's tile size: Supercluster's radius is then in screen pixels
const PAD = 0.25; // of the view on each side: small pans do not show an empty edge

function clusterIcon(count) {
  const size = count < 10 ? "small" : count < 100 ? "medium" : "large";
  return L.divIcon({
    html: `<div><span>${count}</span></div>`,
    className: `marker-cluster marker-cluster-${size}`,
    iconSize: L.point(40, 40),
  });
}

/**
 * Create the sensors layer. `list()` returns the sensors to draw ({id, lat, lon, marker});
 * `markerFor(sensor)` returns the sensor's marker (made once, kept on `sensor.marker`);
 * `clusterTitle(count)` labels a cluster; `radius` is the cluster radius in pixels (as
 * markercluster's maxClusterRadius); clusters are formed from `minZoom` (the map's, below it the
 * same clusters) up to `maxZoom`, single sensors shown beyond it.
 */
export function sensorLayer({
  list, markerFor, clusterTitle, radius = 40, minZoom = 6, maxZoom = 17,
}) {
  const Layer = L.Layer.extend({
    initialize() {
      this._index = null;
      this._group = L.layerGroup();
      this._shown = new Map(); // key → marker on the map
      this._pending = false;
      this._generation = 0; // cluster ids belong to one index: its clusters' markers too
    },

    /** Cluster `list()` again and draw the view, now. */
    refresh() {
      this._build();
      this._draw();
    },

    /** A sensor was added, moved or removed: rebuild once per frame, however many changed. */
    changed() {
      if (this._pending) return;
      this._pending = true;
      requestAnimationFrame(() => {
        this._pending = false;
        this.refresh();
      });
    },

    onAdd(map) {
      this._group.addTo(map);
      map.on("moveend", this._draw, this);
      this._draw();
    },

    onRemove(map) {
      map.off("moveend", this._draw, this);
      this._group.clearLayers();
      this._group.remove();
      this._shown.clear();
    },

    _build() {
      const sensors = list();
      const points = new Array(sensors.length);
      for (let i = 0; i < points.length; i += 1) {
        const s = sensors[i];
        points[i] = {
          geometry: { type: "Point", coordinates: [s.lon, s.lat] }, properties: { sensor: s },
        };
      }
      this._index = new Supercluster({ radius, extent: EXTENT, minZoom, maxZoom });
      this._index.load(points);
      this._generation += 1;
    },

    _draw() {
      const map = this._map;
      if (!map || !this._index) return;
      const view = map.getBounds().pad(PAD);
      const west = Math.max(-180, view.getWest());
      const east = Math.min(180, view.getEast());
      const zoom = Math.round(map.getZoom());
      const items = this._index.getClusters(
        [west, Math.max(-85, view.getSouth()), east, Math.min(85, view.getNorth())], zoom,
      );
      const next = new Map();
      for (const item of items) {
        const [lon, lat] = item.geometry.coordinates;
        if (item.properties && item.properties.cluster) {
          const id = item.properties.cluster_id;
          const key = `cluster:${this._generation}:${zoom}:${id}`;
          let marker = this._shown.get(key);
          if (!marker) {
            const count = item.properties.point_count;
            marker = L.marker([lat, lon], {
              icon: clusterIcon(count), title: clusterTitle(count), keyboard: true,
            });
            const index = this._index;
            const expand = () => {
              const target = Math.min(index.getClusterExpansionZoom(id), map.getMaxZoom());
              map.setView([lat, lon], Math.max(target, zoom + 1));
            };
            marker.on("click", expand);
            marker.on("keypress", (event) => {
              if (event.originalEvent && event.originalEvent.key === "Enter") expand();
            });
          }
          next.set(key, marker);
        } else {
          const { sensor } = item.properties;
          next.set(sensor.id, sensor.marker || markerFor(sensor));
        }
      }
      for (const [key, marker] of this._shown) {
        if (next.get(key) !== marker) this._group.removeLayer(marker);
      }
      for (const [key, marker] of next) {
        if (this._shown.get(key) !== marker) this._group.addLayer(marker);
      }
      this._shown = next;
      document.body.dataset.sensorMarkers = String(items.length);
    },
  });
  return new Layer();
}
