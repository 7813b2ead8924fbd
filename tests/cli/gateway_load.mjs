// gateway_load.mjs: mesh-gateway under concurrent requests from node's
// built-in fetch (no npm packages), for tests/cli/test_gateway.sh.
// Usage: node gateway_load.mjs BASE-URL
// BASE-URL serves GET /orders/{id} (service: gw-responder's echo),
// POST /raw/{kind} (a queue) and ANY /svc/{proxy+} (the same service,
// whose /svc/slow answers after the gateway's timeout). Prints one JSON
// object of counts; the shell test judges them.
import { parsed, timed } from "./http_client.mjs";

const base = process.argv[2];
const n = 100;

const out = {};

// 100 service requests at once: each answer is its own.
{
	const all = await Promise.all(
		Array.from({ length: n }, (_, i) =>
			timed(`${base}/orders/item-${i}?n=${i}`, {
				headers: { "X-Request-Id": `load-${i}` },
			}),
		),
	);
	let ok = 0;
	let wrong = [];
	all.forEach(({ r, body }, i) => {
		const j = parsed(body);
		if (
			r.status === 200 &&
			j.params?.id === `item-${i}` &&
			j.query === `n=${i}` &&
			j.requestId === `load-${i}` &&
			r.headers.get("x-request-id") === `load-${i}`
		) {
			ok++;
		} else if (wrong.length < 3) {
			wrong.push({ i, status: r.status, body });
		}
	});
	out.service_ok = ok;
	out.service_wrong = wrong;
}

// 100 events at once: each stored, each id its own.
{
	const all = await Promise.all(
		Array.from({ length: n }, (_, i) =>
			timed(`${base}/raw/load`, {
				method: "POST",
				headers: { "Content-Type": "text/plain" },
				body: `event ${i}`,
			}),
		),
	);
	const ids = new Set();
	let ok = 0;
	for (const { r, body } of all) {
		if (r.status === 202) {
			ok++;
			ids.add(JSON.parse(body).MessageId);
		}
	}
	out.queue_ok = ok;
	out.queue_unique_ids = ids.size;
}

// A slow request holds no thread: 20 fast ones beside it finish first.
{
	const slow = timed(`${base}/svc/slow`);
	await new Promise((res) => setTimeout(res, 50));
	const fast = await Promise.all(
		Array.from({ length: 20 }, (_, i) => timed(`${base}/orders/f${i}`)),
	);
	const s = await slow;
	out.slow_status = s.r.status;
	out.slow_ms = Math.round(s.ms);
	out.fast_ok = fast.filter((f) => f.r.status === 200).length;
	out.fast_max_ms = Math.round(Math.max(...fast.map((f) => f.ms)));
}

console.log(JSON.stringify(out));
