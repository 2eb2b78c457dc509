// The bytes the approver's passkey signs, spelled exactly as oneroof's Python does
// (core/signatures.py Statement.message, core/passkeys.py Assertion.text and Credential.line).
// Plain functions without Directus or Vue, so tests/test_ratify_page.py runs them under node.

export const ASSERTION_TYPE = 'oneroof-passkey-assertion/v1';
export const VALID_HOURS = 1; // the statement's lifetime: it is made and used in one sitting
const PLACEHOLDER = /^<([a-z0-9_]+)>$/;

function sorted(value) {
	if (Array.isArray(value)) return value.map(sorted);
	if (value && typeof value === 'object') {
		return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sorted(value[k])]));
	}
	return value;
}

// json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
export function canonicalJson(value) {
	return JSON.stringify(sorted(value)).replace(
		/[\u007f-\uffff]/g,
		(c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'),
	);
}

// RFC 3339 in UTC to the second: 2026-01-31T12:00:00Z
export function utc(date) {
	return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function hex(bytes) {
	return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function filled(template, values) {
	if (Array.isArray(template)) return template.map((v) => filled(v, values));
	if (template && typeof template === 'object') {
		return Object.fromEntries(Object.entries(template).map(([k, v]) => [k, filled(v, values)]));
	}
	const name = typeof template === 'string' && template.match(PLACEHOLDER);
	if (!name) return template;
	if (typeof values[name[1]] !== 'string') throw new Error(`the page has no value for the statement's field ${name[1]}`);
	return values[name[1]];
}

// The statement's signed bytes as text: canonical JSON and a newline. `template` is oneroof's
// statement with "<field>" for each field (written at build time by `python3 -m
// oneroof.executor.ratify`), so the page follows the statement format of the oneroof it was
// built with; `values` gives each field by its name in core/signatures.py's Statement.
export function statementText(template, values) {
	return canonicalJson(filled(template, values)) + '\n';
}

// The values of a statement issued now for `hours`.
export function validity(issued, hours = VALID_HOURS) {
	return { issued_at: utc(issued), expires_at: utc(new Date(issued.getTime() + hours * 3600 * 1000)) };
}

export function b64url(bytes) {
	let binary = '';
	for (const b of new Uint8Array(bytes)) binary += String.fromCharCode(b);
	return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// The line stored after the statement: what navigator.credentials.get returned.
export function assertionText({ rawId, authenticatorData, clientDataJSON, signature }) {
	return (
		canonicalJson({
			authenticator_data: b64url(authenticatorData),
			client_data_json: b64url(clientDataJSON),
			credential_id: b64url(rawId),
			signature: b64url(signature),
			type: ASSERTION_TYPE,
		}) + '\n'
	);
}

// Where the CBOR item starting at `offset` ends (definite lengths, as COSE keys use).
export function cborEnd(bytes, offset) {
	const major = bytes[offset] >> 5;
	const info = bytes[offset] & 0x1f;
	let at = offset + 1;
	let length = info;
	if (info === 24) (length = bytes[at]), (at += 1);
	else if (info === 25) (length = (bytes[at] << 8) | bytes[at + 1]), (at += 2);
	else if (info === 26) (length = ((bytes[at] << 24) >>> 0) + (bytes[at + 1] << 16) + (bytes[at + 2] << 8) + bytes[at + 3]), (at += 4);
	else if (info > 26) throw new Error('CBOR item of indefinite or 64-bit length');
	if (major === 0 || major === 1 || major === 7) return at;
	if (major === 2 || major === 3) return at + length;
	let end = at;
	const items = major === 4 ? length : major === 5 ? 2 * length : 1;
	for (let i = 0; i < items; i++) end = cborEnd(bytes, end);
	return end;
}

function uuidOf(bytes) {
	const h = hex(bytes);
	return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// The trust file's line for a credential just registered, from its authenticator data
// (rpIdHash 32, flags 1, counter 4, AAGUID 16, id length 2, id, COSE key).
export function trustLine({ email, directusId, level, rpId, origin, authenticatorData }) {
	const data = new Uint8Array(authenticatorData);
	if (!(data[32] & 0x40)) throw new Error('the authenticator returned no attested credential data');
	const aaguid = uuidOf(data.slice(37, 53));
	const idLength = (data[53] << 8) | data[54];
	const credentialId = data.slice(55, 55 + idLength);
	const cose = data.slice(55 + idLength, cborEnd(data, 55 + idLength));
	return (
		`${email} passkey directus-id=${directusId} level=${level} rp-id=${rpId} origin=${origin} ` +
		`aaguid=${aaguid} credential=${b64url(credentialId)} cose=${b64url(cose)}`
	);
}

// The rehearsal's GO/NO-GO matrix from evidence.json, as core/evidence.py from_evidence reads it.
export const REQUIRED_STEPS = [
	'package', 'golden', 'clone', 'baseline', 'rollout_blocked', 'approve', 'rollout',
	'finalized', 'rollback', 'greenfield', 'rollback_again', 'golden_intact',
];

export function matrix(evidence) {
	const steps = Array.isArray(evidence.steps) ? evidence.steps.filter((s) => s && typeof s === 'object') : [];
	const names = new Set(steps.map((s) => String(s.name)));
	const failed = steps.find((s) => !s.ok);
	const missing = REQUIRED_STEPS.filter((n) => !names.has(n));
	const whyNot = evidence.interrupted
		? 'it was interrupted'
		: failed
			? `step ${failed.name} failed`
			: missing.length
				? `it has no step ${missing[0]}`
				: '';
	return {
		go: !whyNot,
		whyNot,
		packageSha256: String((evidence.package || {}).sha256 || ''),
		origin: String((evidence.golden_provenance || {}).kind || 'unknown'),
		database: String((evidence.golden_provenance || {}).database || ''),
		rows: steps.map((s) => ({ name: String(s.name), title: String(s.title || ''), ok: !!s.ok, detail: String(s.detail || '') })),
	};
}
