/**
 * The simulator's node ids, in `nsu=` form so they survive namespace reordering.
 *
 * This file imports nothing from node-opcua: the demo and the tests read it to write a
 * mapping without paying the ~1 s that loading node-opcua costs.
 *
 * The machine is instantiated with the string node id `s=Machine`. node-opcua names the
 * children of a string node `<parent>-<BrowseName>`, so every member the Woodworking
 * companion spec gives the machine has a stable string id too, e.g.
 * `s=Machine-Identification-SerialNumber` (browse path Machine/Identification/SerialNumber).
 */
import { KerfError } from "../errors.ts";

export const SIMULATOR_NAMESPACE_URI = "urn:kerf:simulator";
export const WOODWORKING_NAMESPACE_URI = "http://opcfoundation.org/UA/Woodworking/";
export const MACHINERY_NAMESPACE_URI = "http://opcfoundation.org/UA/Machinery/";

/** Browse name of the machine under Objects/Machines, and the root of its string node ids. */
export const MACHINE_NAME = "Machine";

/** Highest load-mode count: the counters' node ids have five digits. */
export const MAX_LOAD_COUNT = 100_000;

function sim(id: string): string {
  return `nsu=${SIMULATOR_NAMESPACE_URI};s=${id}`;
}

/** A member of the instantiated WwMachineType, by its browse path below the machine. */
function machine(...path: string[]): string {
  return sim([MACHINE_NAME, ...path].join("-"));
}

export const SIM_NODES = {
  machine: machine(),
  // Identification (Machinery MachineIdentificationType, as used by WwMachineType)
  manufacturer: machine("Identification", "Manufacturer"),
  model: machine("Identification", "Model"),
  serialNumber: machine("Identification", "SerialNumber"),
  yearOfConstruction: machine("Identification", "YearOfConstruction"),
  productInstanceUri: machine("Identification", "ProductInstanceUri"),
  deviceClass: machine("Identification", "DeviceClass"),
  // State/Machine/Overview: WwUnitStateEnumeration and WwUnitModeEnumeration
  currentState: machine("State", "Machine", "Overview", "CurrentState"),
  currentMode: machine("State", "Machine", "Overview", "CurrentMode"),
  // State/Machine/Flags
  machineOn: machine("State", "Machine", "Flags", "MachineOn"),
  recipeInRun: machine("State", "Machine", "Flags", "RecipeInRun"),
  alarmFlag: machine("State", "Machine", "Flags", "Alarm"),
  dustChipSuction: machine("State", "Machine", "Flags", "DustChipSuction"),
  // State/Machine/Values (times in ms, lengths in mm, as the spec defines them)
  absoluteMachineOnTime: machine("State", "Machine", "Values", "AbsoluteMachineOnTime"),
  absoluteWorkingTime: machine("State", "Machine", "Values", "AbsoluteWorkingTime"),
  absolutePiecesOut: machine("State", "Machine", "Values", "AbsolutePiecesOut"),
  relativePiecesOut: machine("State", "Machine", "Values", "RelativePiecesOut"),
  absoluteLength: machine("State", "Machine", "Values", "AbsoluteLength"),
  actualCycle: machine("State", "Machine", "Values", "ActualCycle"),
  feedSpeed: machine("State", "Machine", "Values", "FeedSpeed"),
  lastProgramName: machine("ManufacturerSpecific", "LastProgramName"),
  // our own process values
  spindleSpeed: sim("Spindle.Speed"),
  feedRate: sim("Feed.Rate"),
  programName: sim("Program.Name"),
  dustAirflow: sim("DustExtraction.Airflow"),
  dustAirflowOk: sim("DustExtraction.AirflowOk"),
  dustAlarm: sim("DustExtraction.Alarm"),
  loadFolder: sim("Load"),
  /** Writable (Double, m/min): the only node a remote write can change. */
  feedSetpoint: sim("Feed.Setpoint"),
  /** The object of the Acknowledge method (String note in, UInt32 count out). */
  vendorObject: machine("ManufacturerSpecific"),
  acknowledge: sim("Machine.Acknowledge"),
  /** The standard Server object: every alarm of the simulator is notified through it. */
  server: "i=2253",
} as const;

/** The node id of load counter `i`, e.g. `nsu=urn:kerf:simulator;s=Load.Counter.00042`. */
export function loadNodeId(i: number): string {
  return sim(loadCounterId(i));
}

/** The string identifier of load counter `i`, without namespace. */
export function loadCounterId(i: number): string {
  if (!Number.isInteger(i) || i < 0 || i >= MAX_LOAD_COUNT) {
    throw new KerfError("INTERNAL", `load counter index must be a whole number in 0..${MAX_LOAD_COUNT - 1}, got ${i}`);
  }
  return `Load.Counter.${String(i).padStart(5, "0")}`;
}

export interface SimulatorMappingEntry {
  /** The data point key the cloud sees. */
  key: string;
  /** The node id, `nsu=` form. */
  node: string;
  /** Unit of the value, when it has one. */
  unit?: string;
}

/** The data points and events a mapping for the simulated machine `machineId` should watch. */
export function simulatorMapping(machineId: string): { machine: string; points: SimulatorMappingEntry[]; events: { key: string; notifier: string }[] } {
  return {
    machine: machineId,
    points: [
      { key: "spindle.speed", node: SIM_NODES.spindleSpeed, unit: "rpm" },
      { key: "feed.rate", node: SIM_NODES.feedRate, unit: "m/min" },
      { key: "program.name", node: SIM_NODES.programName },
      { key: "dust.airflow", node: SIM_NODES.dustAirflow, unit: "m3/h" },
      { key: "state", node: SIM_NODES.currentState },
      { key: "mode", node: SIM_NODES.currentMode },
      { key: "pieces.out", node: SIM_NODES.absolutePiecesOut },
      { key: "pieces.out.relative", node: SIM_NODES.relativePiecesOut },
      { key: "machine.on.time", node: SIM_NODES.absoluteMachineOnTime, unit: "ms" },
      { key: "working.time", node: SIM_NODES.absoluteWorkingTime, unit: "ms" },
      { key: "length", node: SIM_NODES.absoluteLength, unit: "mm" },
      { key: "cycle", node: SIM_NODES.actualCycle, unit: "1/min" },
      { key: "serial", node: SIM_NODES.serialNumber },
    ],
    events: [{ key: "alarm", notifier: SIM_NODES.server }],
  };
}

/** WwUnitStateEnumeration (Woodworking 1.02). */
export const WW_STATE = { OFFLINE: 0, STANDBY: 1, READY: 2, WORKING: 3, ERROR: 4 } as const;
/** WwUnitModeEnumeration (Woodworking 1.02). */
export const WW_MODE = { OTHER: 0, AUTOMATIC: 1, SEMIAUTOMATIC: 2, MANUAL: 3, SETUP: 4, SLEEP: 5 } as const;

/**
 * Rogue mode (`startSimulator({ rogue: true })`, `kerf simulate --rogue`): values a broken or
 * malicious server could send, under Objects/Rogue. The connector must stay up, keep its memory
 * bounded, and forward each of them bounded or marked (see src/opcua/session/limits.ts).
 */
export const ROGUE_NODES = {
  folder: sim("Rogue"),
  /** A String of `ROGUE_SIZES.hugeStringChars` characters. */
  hugeString: sim("Rogue.HugeString"),
  /** A UInt32 array of `ROGUE_SIZES.hugeArrayLength` elements. */
  hugeArray: sim("Rogue.HugeArray"),
  /** Variant arrays nested `ROGUE_SIZES.deepNesting` levels deep, an Int32 at the bottom. */
  deepNested: sim("Rogue.DeepNested"),
  /** `ROGUE_BAD_UTF8`: lone surrogates, which reach the wire as replacement characters or as a broken byte sequence. */
  badUtf8: sim("Rogue.BadUtf8"),
  /** `ROGUE_BAD_UTF8_BYTES`: a ByteString that is not UTF-8 at all. */
  badUtf8Bytes: sim("Rogue.BadUtf8Bytes"),
  /** `ROGUE_PROTO_JSON`: a String holding JSON with `__proto__` and `constructor` keys. */
  protoKeys: sim("Rogue.ProtoKeys"),
  /** `ROGUE_HTML`: markup and script, which must travel as data. */
  html: sim("Rogue.Html"),
  /** A String of `ROGUE_SIZES.overTransportChars` characters: more than a 16 MiB message can carry. */
  overTransport: sim("Rogue.OverTransport"),
} as const;

/**
 * Rogue mode, part two, under Objects/Rogue/Decoding: values that test the client's decoder
 * rather than its limits (the folder is separate so that the values above stay what they were).
 */
export const ROGUE_DECODING_NODES = {
  folder: sim("Rogue.Decoding"),
  /** A structure whose fields are named `__proto__`, `constructor` and `prototype` (DataType `RogueProtoFields`). */
  protoFields: sim("Rogue.Decoding.ProtoFields"),
  /** A structure whose DataType (`RogueHanging`) the server never answers a Read about. */
  hangingType: sim("Rogue.Decoding.HangingType"),
  /** Variant arrays nested `ROGUE_SIZES.overNesting` levels deep: more than node-opcua's decoder takes. */
  overNested: sim("Rogue.Decoding.OverNested"),
  /** A UInt32 matrix of one element with `ROGUE_SIZES.matrixDimensions` dimensions of 1. */
  manyDimensions: sim("Rogue.Decoding.ManyDimensions"),
} as const;

export const ROGUE_SIZES = {
  hugeStringChars: 10 * 1024 * 1024,
  hugeArrayLength: 1_000_000,
  /** Deeper than Kerf's limit (32) but within node-opcua's decoder limit (128), so it reaches Kerf. */
  deepNesting: 100,
  overTransportChars: 20 * 1024 * 1024,
  /** Deeper than node-opcua's decoder limit (128): the message that carries it cannot be decoded. */
  overNesting: 200,
  /** node-opcua decodes up to 1,048,576 array dimensions. */
  matrixDimensions: 1_048_576,
} as const;

/**
 * node-opcua writes each lone surrogate as U+FFFD, except that its byte count skips the
 * character before a lone trail surrogate: after "é" the wire carries a truncated sequence.
 */
export const ROGUE_BAD_UTF8 = "lone lead \ud800, lone trail \udfff, after a letter é\udc00.";
/** Bytes that no UTF-8 decoder accepts: FF, FE, an overlong "/", a CESU-8 surrogate, a 5-byte form. */
export const ROGUE_BAD_UTF8_BYTES: readonly number[] = [0xff, 0xfe, 0xc0, 0xaf, 0xed, 0xa0, 0x80, 0xf8, 0x88, 0x80, 0x80, 0x80];
export const ROGUE_PROTO_JSON = '{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"prototype":{"polluted":"yes"}}';
export const ROGUE_HTML = `<script>alert(1)</script><img src=x onerror="alert('xss')"><a href="javascript:alert(3)">&amp;</a></textarea>`;
