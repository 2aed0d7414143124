// The wall screen: the sector centres in turn, each shown full-screen in large type for the
// chosen interval. Space (or the button) pauses, the right arrow (or "next") moves on at once.

const config = JSON.parse(document.getElementById("wall-config").textContent);
const S = config.strings;
const frame = document.getElementById("wall-frame");
const title = document.getElementById("wall-sector");
const pause = document.getElementById("wall-pause");
const bar = document.getElementById("wall-progress");
const clock = document.getElementById("wall-clock");
const timeFormat = new Intl.DateTimeFormat(config.lang === "en" ? "en-GB" : "vi-VN", {
  timeZone: "Asia/Ho_Chi_Minh", weekday: "long", day: "2-digit", month: "2-digit",
  hour: "2-digit", minute: "2-digit",
});
let index = -1;
let paused = false;
let shownAt = 0;
let shown = 0;

function show(next) {
  index = next % config.sectors.length;
  const sector = config.sectors[index];
  const params = new URLSearchParams({ wall: "true" });
  if (config.area) params.set("area", config.area);
  if (config.unit) params.set("unit", config.unit);
  frame.src = `/sectors/${sector.code}?${params}`;
  title.textContent = sector.name;
  document.body.dataset.sector = sector.code;
  shown += 1;
  document.body.dataset.shown = String(shown);
  shownAt = performance.now();
}

function tick() {
  clock.textContent = timeFormat.format(new Date());
  if (paused) return;
  const elapsed = (performance.now() - shownAt) / 1000;
  bar.style.width = `${Math.min(100, (100 * elapsed) / config.interval)}%`;
  if (elapsed >= config.interval) show(index + 1);
}

function toggle() {
  paused = !paused;
  pause.setAttribute("aria-pressed", String(paused));
  pause.textContent = paused ? S.resume : S.pause;
  // Resuming gives the current sector a full interval again.
  if (!paused) shownAt = performance.now();
}

pause.addEventListener("click", toggle);
document.getElementById("wall-next").addEventListener("click", () => show(index + 1));
document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement) return;
  if (event.key === "ArrowRight") show(index + 1);
  else if (event.key === "ArrowLeft") show(index - 1 + config.sectors.length);
  else if (event.key === " " && !(event.target instanceof HTMLButtonElement)) {
    event.preventDefault();
    toggle();
  }
});

show(0);
setInterval(tick, 250);
tick();
document.body.dataset.ready = "1";
