// http_client.mjs: what the node clients of the gateway's tests share
// (node's built-in fetch, no npm packages).

// fetch url, its body read: {r, body, ms}.
export async function timed(url, init) {
	const t0 = performance.now();
	const r = await fetch(url, init);
	const body = await r.text();
	return { r, body, ms: performance.now() - t0 };
}

// JSON.parse, or {} for what is not JSON.
export function parsed(body) {
	try {
		return JSON.parse(body);
	} catch (e) {
		return {};
	}
}
