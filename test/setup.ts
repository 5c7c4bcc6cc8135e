import { silentLogger } from "../src/log.ts";
import { routeOpcuaLogging } from "../src/opcua/logging.ts";

// node-opcua writes its own warnings to the console; in tests they go to a silent pino logger,
// as in the product they go to the connector's log.
routeOpcuaLogging(silentLogger());
