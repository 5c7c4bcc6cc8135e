import type { AddressSpace, ISessionContext, Namespace, UAObject, UAVariable } from "node-opcua-address-space";
import { makeEUInformation, standardUnits } from "node-opcua-data-access";
import { StatusCodes } from "node-opcua-status-code";
import { DataType, VariantArrayType, type Variant, type VariantOptions } from "node-opcua-variant";
import type { Logger } from "../log.ts";
import { createDustAlarm } from "./alarms.ts";
import { MACHINE_NAME, MACHINERY_NAMESPACE_URI, WOODWORKING_NAMESPACE_URI, WW_STATE } from "./nodes.ts";
import { MachineSimulation, type MachineSnapshot } from "./simulation.ts";
import { KerfError } from "../errors.ts";

export interface MachineOptions {
  /** How often the process values move; default 100 ms. */
  tickMs?: number;
  /** One dust-extraction alarm per period; default 60 s. */
  alarmPeriodMs?: number;
  seed?: number;
}

export interface RunningMachine {
  machine: UAObject;
  simulation: MachineSimulation;
  stop(): void;
}

// Optional members of WwMachineType that the simulated machine has (browse paths below it).
const OPTIONALS = [
  "Identification.SoftwareRevision",
  "Identification.MonthOfConstruction",
  "Identification.ManufacturerUri",
  "Identification.Location",
  "State.Machine.Flags",
  "State.Machine.Flags.DustChipSuction",
  "State.Machine.Flags.FeedRuns",
  "State.Machine.Flags.WorkpiecePresent",
  "State.Machine.Values",
  ...[
    "AbsoluteMachineOnTime",
    "AbsoluteWorkingTime",
    "AbsolutePiecesIn",
    "AbsolutePiecesOut",
    "RelativePiecesOut",
    "AbsoluteRunsGood",
    "AbsoluteLength",
    "ActualCycle",
    "FeedSpeed",
    "SpindleOverride",
  ].map((v) => `State.Machine.Values.${v}`),
  "ManufacturerSpecific",
  "ManufacturerSpecific.LastProgramName",
];

/** Process values move at most this often; clients may sample them this fast. */
const PROCESS_SAMPLING_MS = 50;

/**
 * Instantiates one WwMachineType (OPC 40550 Woodworking) under Objects/Machines, as the
 * Machinery companion spec asks, adds our own process values, and runs the simulation.
 */
export function buildMachine(addressSpace: AddressSpace, ns: Namespace, logger: Logger, options: MachineOptions = {}): RunningMachine {
  const wwIndex = addressSpace.getNamespaceIndex(WOODWORKING_NAMESPACE_URI);
  const machineryIndex = addressSpace.getNamespaceIndex(MACHINERY_NAMESPACE_URI);
  const machineType = addressSpace.findObjectType("WwMachineType", wwIndex);
  const machines = addressSpace.findNode(`ns=${machineryIndex};i=1001`) as UAObject | null;
  if (!machineType || !machines) throw new KerfError("INTERNAL", "Woodworking or Machinery nodeset not loaded");

  const machine = machineType.instantiate({
    namespace: ns,
    nodeId: `s=${MACHINE_NAME}`,
    browseName: { name: MACHINE_NAME, namespaceIndex: ns.index },
    displayName: "Kerf panel saw (simulated)",
    organizedBy: machines,
    optionals: OPTIONALS,
  });

  // Events of the machine reach the Server object through Machines (OPC UA Part 3 event hierarchy).
  const server = addressSpace.rootFolder.objects.server;
  machines.setEventNotifier(1);
  machine.setEventNotifier(1);
  server.addReference({ referenceType: "HasNotifier", nodeId: machines });
  machines.addReference({ referenceType: "HasNotifier", nodeId: machine });

  const find = (path: string): UAVariable => {
    const node = addressSpace.findNode(`ns=${ns.index};s=${MACHINE_NAME}-${path.replaceAll("/", "-")}`);
    if (!node) throw new KerfError("INTERNAL", `WwMachineType instance lacks ${path}`);
    return node as UAVariable;
  };

  const set = (v: UAVariable, value: VariantOptions) => v.setValueFromSource(value);
  set(find("Identification/Manufacturer"), { dataType: DataType.LocalizedText, value: { text: "Kerf Maschinenbau (simulated)", locale: "en" } });
  set(find("Identification/Model"), { dataType: DataType.LocalizedText, value: { text: "PanelSaw 4200", locale: "en" } });
  set(find("Identification/SerialNumber"), { dataType: DataType.String, value: "KS-4200-000815" });
  set(find("Identification/YearOfConstruction"), { dataType: DataType.UInt16, value: 2023 });
  set(find("Identification/MonthOfConstruction"), { dataType: DataType.Byte, value: 9 });
  set(find("Identification/ProductInstanceUri"), { dataType: DataType.String, value: "urn:kerf:machine:KS-4200-000815" });
  set(find("Identification/DeviceClass"), { dataType: DataType.String, value: "Panel saw" });
  set(find("Identification/SoftwareRevision"), { dataType: DataType.String, value: "4.2.1" });
  set(find("Identification/ManufacturerUri"), { dataType: DataType.String, value: "urn:kerf:manufacturer" });
  set(find("Identification/Location"), { dataType: DataType.String, value: "Hall 2 / Line 1" });

  const flags = {
    machineOn: find("State/Machine/Flags/MachineOn"),
    powerPresent: find("State/Machine/Flags/PowerPresent"),
    initialized: find("State/Machine/Flags/MachineInitialized"),
    calibrated: find("State/Machine/Flags/Calibrated"),
    recipeInRun: find("State/Machine/Flags/RecipeInRun"),
    alarm: find("State/Machine/Flags/Alarm"),
    warning: find("State/Machine/Flags/Warning"),
    error: find("State/Machine/Flags/Error"),
    emergency: find("State/Machine/Flags/Emergency"),
    dustChipSuction: find("State/Machine/Flags/DustChipSuction"),
    feedRuns: find("State/Machine/Flags/FeedRuns"),
    workpiecePresent: find("State/Machine/Flags/WorkpiecePresent"),
  };
  const overview = {
    state: find("State/Machine/Overview/CurrentState"),
    mode: find("State/Machine/Overview/CurrentMode"),
  };
  const values = {
    machineOnTime: find("State/Machine/Values/AbsoluteMachineOnTime"),
    workingTime: find("State/Machine/Values/AbsoluteWorkingTime"),
    piecesIn: find("State/Machine/Values/AbsolutePiecesIn"),
    piecesOut: find("State/Machine/Values/AbsolutePiecesOut"),
    relativePiecesOut: find("State/Machine/Values/RelativePiecesOut"),
    runsGood: find("State/Machine/Values/AbsoluteRunsGood"),
    length: find("State/Machine/Values/AbsoluteLength"),
    cycle: find("State/Machine/Values/ActualCycle"),
    feedSpeed: find("State/Machine/Values/FeedSpeed"),
    spindleOverride: find("State/Machine/Values/SpindleOverride"),
  };
  const lastProgramName = find("ManufacturerSpecific/LastProgramName");
  const vendor = machine.getComponentByName("ManufacturerSpecific", wwIndex);
  if (!vendor) throw new KerfError("INTERNAL", "WwMachineType instance lacks ManufacturerSpecific");

  for (const v of [...Object.values(flags), ...Object.values(overview), ...Object.values(values), lastProgramName]) {
    v.minimumSamplingInterval = PROCESS_SAMPLING_MS;
  }
  for (const v of [flags.machineOn, flags.powerPresent, flags.initialized, flags.calibrated]) set(v, { dataType: DataType.Boolean, value: true });
  for (const v of [flags.warning, flags.error, flags.emergency, flags.alarm]) set(v, { dataType: DataType.Boolean, value: false });
  set(values.spindleOverride, { dataType: DataType.UInt32, value: 100 });

  // Our own process values, in our namespace with string ids (see SIM_NODES).
  const analog = (nodeId: string, browseName: string, unit: ReturnType<typeof makeEUInformation>, high: number) =>
    ns.addAnalogDataItem({
      nodeId: `s=${nodeId}`,
      browseName,
      componentOf: vendor,
      dataType: "Double",
      engineeringUnits: unit,
      engineeringUnitsRange: { low: 0, high },
      minimumSamplingInterval: PROCESS_SAMPLING_MS,
      value: { dataType: DataType.Double, value: 0 },
    }) as unknown as UAVariable;
  const spindleSpeed = analog("Spindle.Speed", "SpindleSpeed", standardUnits.revolutions_per_minute, 24_000);
  const feedRate = analog("Feed.Rate", "FeedRate", makeEUInformation("2X", "m/min", "metre per minute"), 60);
  const dustAirflow = analog("DustExtraction.Airflow", "DustExtractionAirflow", standardUnits.cubic_metre_per_hour, 4000);
  const programName = ns.addVariable({
    nodeId: "s=Program.Name",
    browseName: "ProgramName",
    componentOf: vendor,
    dataType: "String",
    minimumSamplingInterval: PROCESS_SAMPLING_MS,
  });
  const dustAirflowOk = ns.addVariable({
    nodeId: "s=DustExtraction.AirflowOk",
    browseName: "DustExtractionAirflowOk",
    componentOf: vendor,
    dataType: "Boolean",
    minimumSamplingInterval: PROCESS_SAMPLING_MS,
    value: { dataType: DataType.Boolean, value: true },
  });

  addRemoteTargets(ns, vendor as UAObject);

  const simulation = new MachineSimulation({ alarmPeriodMs: options.alarmPeriodMs, seed: options.seed });
  createDustAlarm(ns, { machine, input: dustAirflowOk, airflow: dustAirflow });

  let last: Partial<MachineSnapshot> = {};
  const publish = (s: Readonly<MachineSnapshot>) => {
    const changed = <K extends keyof MachineSnapshot>(k: K) => last[k] !== s[k];
    const working = s.state === WW_STATE.WORKING;
    set(spindleSpeed, { dataType: DataType.Double, value: s.spindleRpm });
    set(feedRate, { dataType: DataType.Double, value: s.feedRate });
    set(values.feedSpeed, { dataType: DataType.Double, value: s.feedRate });
    set(values.cycle, { dataType: DataType.Double, value: s.cycle });
    set(dustAirflow, { dataType: DataType.Double, value: s.dustAirflow });
    set(values.machineOnTime, uint64(s.machineOnMs));
    if (changed("workingMs")) set(values.workingTime, uint64(s.workingMs));
    if (changed("lengthMm")) set(values.length, uint64(s.lengthMm));
    if (changed("piecesIn")) set(values.piecesIn, uint64(s.piecesIn));
    if (changed("piecesOut")) set(values.piecesOut, uint64(s.piecesOut));
    if (changed("relativePiecesOut")) set(values.relativePiecesOut, uint64(s.relativePiecesOut));
    if (changed("runsGood")) set(values.runsGood, uint64(s.runsGood));
    if (changed("state")) {
      set(overview.state, { dataType: DataType.Int32, value: s.state });
      set(flags.recipeInRun, { dataType: DataType.Boolean, value: working });
      set(flags.workpiecePresent, { dataType: DataType.Boolean, value: working });
      set(flags.error, { dataType: DataType.Boolean, value: s.state === WW_STATE.ERROR });
    }
    if (changed("mode")) set(overview.mode, { dataType: DataType.Int32, value: s.mode });
    if (changed("program")) {
      set(programName, { dataType: DataType.String, value: s.program });
      set(lastProgramName, { dataType: DataType.String, value: s.program });
    }
    set(flags.feedRuns, { dataType: DataType.Boolean, value: s.feedRate > 0 });
    if (changed("dustAirflowOk")) {
      set(flags.dustChipSuction, { dataType: DataType.Boolean, value: s.dustAirflowOk });
      set(flags.alarm, { dataType: DataType.Boolean, value: !s.dustAirflowOk });
      // the alarm follows this input (OffNormalAlarm), so the event fires from here
      set(dustAirflowOk, { dataType: DataType.Boolean, value: s.dustAirflowOk });
    }
    last = { ...s };
  };
  publish(simulation.snapshot);

  const tickMs = options.tickMs ?? 100;
  let lastTick = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    try {
      publish(simulation.step(now - lastTick));
    } catch (err) {
      logger.error({ err }, "simulation step failed");
    }
    lastTick = now;
  }, tickMs);
  timer.unref();

  return {
    machine,
    simulation,
    stop: () => clearInterval(timer),
  };
}

/**
 * What remote commands may change (issue 16): a writable feed setpoint (Double, 0..60 m/min) and
 * a method that acknowledges a message and counts the acknowledgements. Nothing else in the
 * simulator is writable.
 */
function addRemoteTargets(ns: Namespace, vendor: UAObject): void {
  ns.addVariable({
    nodeId: "s=Feed.Setpoint",
    browseName: "FeedSetpoint",
    componentOf: vendor,
    dataType: "Double",
    accessLevel: "CurrentRead | CurrentWrite",
    userAccessLevel: "CurrentRead | CurrentWrite",
    minimumSamplingInterval: PROCESS_SAMPLING_MS,
    value: { dataType: DataType.Double, value: 10 },
  });
  let acknowledged = 0;
  const method = ns.addMethod(vendor, {
    nodeId: "s=Machine.Acknowledge",
    browseName: "Acknowledge",
    inputArguments: [{ name: "note", dataType: DataType.String, description: { text: "why" } }],
    outputArguments: [{ name: "count", dataType: DataType.UInt32, description: { text: "acknowledgements so far" } }],
  });
  // two parameters: node-opcua tells an async method from a callback one by its arity
  method.bindMethod(async (_inputs: Variant[], _context: ISessionContext) => ({ statusCode: StatusCodes.Good, outputArguments: [{ dataType: DataType.UInt32, value: ++acknowledged }] }));
}

/** node-opcua carries UInt64 as [high, low] 32-bit words. */
function uint64(n: number): VariantOptions {
  const v = Math.max(0, Math.floor(n));
  return { dataType: DataType.UInt64, arrayType: VariantArrayType.Scalar, value: [Math.floor(v / 2 ** 32), v >>> 0] };
}
