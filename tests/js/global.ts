// A page's script that uses the globals of the classic script ({% wsgateway_script %}), typed by
// wsgateway.d.ts. A script, not a module: no import or export here.

const page: WSGateway = new WSGateway();
const fromWindow: WSGateway = new window.WSGateway({ autoConnect: false });
const failure: WSGatewayError = new WSGatewayError("timeout", "No reply within 10 ms.");
const sameClass: typeof WSGatewayError = WSGateway.Error;

page.on("state", (state) => {
  document.body.hidden = state !== WSGateway.STATES.CLOSED;
});
console.log(fromWindow.url, failure.code, sameClass.name);

// @ts-expect-error: the global is a class, not a function to call
WSGateway();
