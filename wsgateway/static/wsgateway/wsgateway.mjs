/*!
 * wsgateway.mjs: wsgateway.js as an ES module, for `import { WSGateway } from ".../wsgateway.mjs"`.
 *
 * Not a second copy: importing wsgateway.js runs it (a module may import a file without exports
 * for what it does), and it sets `globalThis.WSGateway` and `globalThis.WSGatewayError`, which are
 * exported here. A page that loaded wsgateway.js already (`{% wsgateway_script %}`) gets the same
 * class. See "Loading it as a module" in docs/client.md; the types are in wsgateway.d.mts.
 */
import "./wsgateway.js";

const { WSGateway, WSGatewayError } = globalThis;

export { WSGateway, WSGatewayError };
export default WSGateway;
