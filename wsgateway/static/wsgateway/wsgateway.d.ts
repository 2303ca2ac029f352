/**
 * The globals wsgateway.js sets when a page loads it as a classic script ({% wsgateway_script %}):
 * `WSGateway` and `WSGatewayError`, the classes that wsgateway.d.mts describes for the module.
 *
 * A script file (no import or export), so that a page's TypeScript sees them as globals: list
 * this file in tsconfig.json's "files", or `/// <reference path=".../wsgateway.d.ts" />`.
 * Needs a "moduleResolution" that maps .mjs to .d.mts ("bundler", "node16", "nodenext").
 * `declare var` puts them on `globalThis` too, so `window.WSGateway` is typed as well.
 */

declare var WSGateway: typeof import("./wsgateway.mjs").WSGateway;
type WSGateway = import("./wsgateway.mjs").WSGateway;

declare var WSGatewayError: typeof import("./wsgateway.mjs").WSGatewayError;
type WSGatewayError = import("./wsgateway.mjs").WSGatewayError;
