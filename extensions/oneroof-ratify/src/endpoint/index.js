// GET /oneroof-ratify/context: what the ratification page needs and the browser cannot read
// itself, for the logged-in user only: who they are as an approver (os_approvers), the target's
// identity (database name and OID, cluster system_identifier: what the statement names) and the
// proposals that may be ratified. Read-only; approvals are written by the page through Directus's
// own items and comments API, as the user.

async function systemIdentifier(database) {
	const allowed = await database.raw(
		"SELECT has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') AS ok",
	);
	if (!allowed.rows[0].ok) return null;
	const found = await database.raw('SELECT system_identifier::text AS id FROM pg_catalog.pg_control_system()');
	return found.rows[0].id;
}

export default {
	id: 'oneroof-ratify',
	handler: (router, { database }) => {
		router.get('/context', async (req, res) => {
			const userId = req.accountability && req.accountability.user;
			if (!userId) {
				res.status(401).json({ errors: [{ message: 'log in to Directus as yourself first' }] });
				return;
			}
			try {
				const user = await database('directus_users').select('id', 'email', 'status').where({ id: userId }).first();
				const approver = await database('os_approvers').select('kind', 'level').where({ user_id: userId }).first();
				const name = await database.raw(
					'SELECT datname AS name, oid::text AS oid FROM pg_catalog.pg_database WHERE datname = current_database()',
				);
				const proposals = await database('os_proposals')
					.select('id', 'code', 'title', 'status', 'package_sha256')
					.whereIn('status', ['pending', 'ratified'])
					.orderBy('id');
				res.json({
					data: {
						user: { ...user, admin: !!req.accountability.admin },
						approver: approver || null,
						database: name.rows[0].name,
						database_oid: name.rows[0].oid,
						system_identifier: await systemIdentifier(database),
						proposals,
					},
				});
			} catch (error) {
				res.status(500).json({ errors: [{ message: `cannot read the ratification context: ${error.message}` }] });
			}
		});
	},
};
