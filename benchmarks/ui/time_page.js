// Times one Dagster UI page in headless Chromium, cold each time (a new browser context):
// until the page shows `text`, and until the network is idle. Prints one JSON document;
// SCREENSHOT=path.png keeps a picture of the last load (to see what was timed).
//   node time_page.js URL TEXT REPEATS
const { chromium } = require("playwright-core");

(async () => {
  const [url, text, repeats] = [process.argv[2], process.argv[3], Number(process.argv[4] || 3)];
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true });
  const loads = [];
  try {
    for (let i = 0; i < repeats; i++) {
      const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
      const page = await context.newPage();
      const graphql = [];
      page.on("requestfinished", (request) => {
        if (request.url().includes("/graphql")) {
          const timing = request.timing();
          graphql.push({ name: (request.postDataJSON() || {}).operationName, ms: timing.responseEnd });
        }
      });
      const started = Date.now();
      await page.goto(url, { waitUntil: "commit" });
      await page.getByText(text, { exact: false }).first().waitFor({ timeout: 120000 });
      const shown = Date.now() - started;
      await page.waitForLoadState("networkidle", { timeout: 120000 });
      const idle = Date.now() - started;
      if (process.env.SCREENSHOT && i === repeats - 1) await page.screenshot({ path: process.env.SCREENSHOT });
      graphql.sort((a, b) => b.ms - a.ms);
      loads.push({ shown_ms: shown, network_idle_ms: idle, slowest_graphql: graphql.slice(0, 3) });
      await context.close();
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(loads));
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
