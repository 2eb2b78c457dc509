import RatifyPage from './ratify.vue';
import RegisterPage from './register.vue';

export default {
	id: 'oneroof-ratify',
	name: 'One-Roof ratify',
	icon: 'verified_user',
	routes: [
		{ path: '', component: RatifyPage },
		{ path: 'register', component: RegisterPage },
	],
};
