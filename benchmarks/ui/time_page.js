// Times one Dagster UI page in headless Chromium, cold each time (a new browser context):
// until the page shows what SHOWN selects, and until the network is idle. SHOWN is a
// Playwright selector: `text=docs/` (text anywhere on the page, case-insensitive) or CSS such
// as `tr:has(:text-is("document_key"))`. Prints one JSON document. Of the last load,
// SCREENSHOT=path.png keeps a picture and PAGE_TEXT=path.txt the page's text (what was timed).
// Each browser context is marked as having dismissed Dagster's "Join the Dagster community"
// dialog (shown on localhost to a browser that never did), which would cover the picture.
//   node time_page.js URL SHOWN REPEATS
const fs = require("fs");
const { chromium } = require("playwright-core");

(async () => {
  const [url, shown, repeats] = [process.argv[2], process.argv[3], Number(process.argv[4] || 3)];
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true });
  const loads = [];
  try {
    for (let i = 0; i < repeats; i++) {
      const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
      await context.addInitScript(() => window.localStorage.setItem("communityNux", JSON.stringify("1")));
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
      await page.locator(shown).first().waitFor({ timeout: 120000 });
      const shownMs = Date.now() - started;
      await page.waitForLoadState("networkidle", { timeout: 120000 });
      const idle = Date.now() - started;
      if (i === repeats - 1) {
        if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });
        if (process.env.PAGE_TEXT) fs.writeFileSync(process.env.PAGE_TEXT, await page.locator("body").innerText());
      }
      graphql.sort((a, b) => b.ms - a.ms);
      loads.push({ shown_ms: shownMs, network_idle_ms: idle, slowest_graphql: graphql.slice(0, 3) });
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
