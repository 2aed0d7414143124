#!/usr/bin/env bash
# Install the front-end libraries from npm (package-lock.json pins them) and copy the files the
# pages load into src/cityops/web/static/vendor/ (ignored by git; CityOps serves them itself).
set -euo pipefail
cd "$(dirname "$0")/.."

out=src/cityops/web/static/vendor
if [ -f "$out/.stamp" ] && [ "$out/.stamp" -nt package-lock.json ]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
rm -rf "$out"
mkdir -p "$out/leaflet" "$out/markercluster" "$out/echarts" "$out/supercluster"
cp node_modules/leaflet/dist/leaflet.js node_modules/leaflet/dist/leaflet.css "$out/leaflet/"
cp -r node_modules/leaflet/dist/images "$out/leaflet/"
cp node_modules/leaflet.markercluster/dist/leaflet.markercluster.js \
   node_modules/leaflet.markercluster/dist/MarkerCluster.css \
   node_modules/leaflet.markercluster/dist/MarkerCluster.Default.css "$out/markercluster/"
# Supercluster's UMD build (kdbush included): the operations map's 10,000-sensor layer.
cp node_modules/supercluster/dist/supercluster.min.js "$out/supercluster/"
cp node_modules/echarts/dist/echarts.min.js node_modules/echarts/i18n/langVI.js "$out/echarts/"
cp node_modules/leaflet/LICENSE "$out/leaflet/LICENSE.txt"
cp node_modules/leaflet.markercluster/MIT-LICENCE.txt "$out/markercluster/LICENSE.txt"
cp node_modules/echarts/LICENSE "$out/echarts/LICENSE.txt"
cp node_modules/supercluster/LICENSE "$out/supercluster/LICENSE.txt"
touch "$out/.stamp"
echo "web-assets: vendor files in $out"
