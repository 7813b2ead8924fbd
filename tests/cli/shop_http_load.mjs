// shop_http_load.mjs: GET /orders/{id} through mesh-gateway from node's
// built-in fetch, every answer judged, for tests/cli/test_shop_http.sh.
// Usage: node shop_http_load.mjs BASE-URL stream MS ID:SHIPPED...
//        node shop_http_load.mjs BASE-URL all N ID:SHIPPED...
// stream: 16 clients ask one after another for MS milliseconds (the test
// kills an instance meanwhile); all: N requests at once. Each ID is an
// order the test placed, SHIPPED (true or false) what its answer must say.
// An answer is right (200, that order, shipped as said, the request's own
// x-request-id), a clear error (502, 503 or 504 with a JSON message and
// the request's id) or wrong (anything else, a failed connection too).
// Prints one JSON object of counts; the shell test judges them.
import { parsed, timed } from "./http_client.mjs";

const [base, mode, amount, ...specs] = process.argv.slice(2);
const orders = specs.map((s) => {
	const [id, shipped] = s.split(":");
	return { id, shipped: shipped === "true" };
});
const out = { right: 0, errors: {}, wrong: 0, wrong_examples: [] };
let seq = 0;

async function ask() {
	const i = seq++;
	const o = orders[i % orders.length];
	const rid = `${mode}-${i}`;
	let verdict = "wrong";
	let seen = {};
	try {
		const { r, body } = await timed(`${base}/orders/${o.id}`, {
			headers: { "X-Request-Id": rid },
		});
		const j = parsed(body);
		seen = { status: r.status, body: body.slice(0, 200) };
		if (r.headers.get("x-request-id") !== rid) {
			verdict = "wrong";
		} else if (r.status === 200) {
			if (
				j.order?.orderId === o.id &&
				(j.shipped === true) === o.shipped
			) {
				verdict = "right";
			}
		} else if (
			[502, 503, 504].includes(r.status) &&
			typeof j.message === "string" &&
			j.requestId === rid
		) {
			verdict = r.status;
		}
	} catch (e) {
		seen = { error: String(e) };
	}
	if (verdict === "right") {
		out.right++;
	} else if (verdict === "wrong") {
		out.wrong++;
		if (out.wrong_examples.length < 3) {
			out.wrong_examples.push({ rid, id: o.id, ...seen });
		}
	} else {
		out.errors[verdict] = (out.errors[verdict] ?? 0) + 1;
	}
}

if (mode === "stream") {
	const until = performance.now() + Number(amount);
	await Promise.all(
		Array.from({ length: 16 }, async () => {
			while (performance.now() < until) {
				await ask();
			}
		}),
	);
} else {
	await Promise.all(Array.from({ length: Number(amount) }, ask));
}
out.total = seq;
console.log(JSON.stringify(out));
