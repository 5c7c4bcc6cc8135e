import { ConditionInfo, type Namespace, type UAObject, type UAVariable } from "node-opcua-address-space";
import { StatusCodes } from "node-opcua-status-code";
import { DataType } from "node-opcua-variant";
import { DUST_AIRFLOW_MIN } from "./simulation.ts";

export const DUST_ALARM_SEVERITY = 700;

type OffNormalAlarm = ReturnType<Namespace["instantiateOffNormalAlarm"]>;

/**
 * "Dust extraction airflow low" as an OPC UA OffNormalAlarm: it is active while the boolean
 * `input` differs from its normal state (true). The alarm belongs to the machine, whose events
 * bubble up to the Server object, so an event subscription on the Server receives it.
 */
export function createDustAlarm(ns: Namespace, parts: { machine: UAObject; input: UAVariable; airflow: UAVariable }): OffNormalAlarm {
  // node-opcua wants a condition source to hang below an event notifier (Part 9 §4.10)
  parts.machine.addReference({ referenceType: "HasEventSource", nodeId: parts.airflow });
  const normalState = ns.addVariable({
    nodeId: "s=DustExtraction.AirflowOk.NormalState",
    browseName: "DustExtractionAirflowOkNormalState",
    propertyOf: parts.input,
    dataType: "Boolean",
    value: { dataType: DataType.Boolean, value: true },
  });
  const alarm = ns.instantiateOffNormalAlarm({
    nodeId: "s=DustExtraction.Alarm",
    browseName: "DustExtractionLow",
    componentOf: parts.machine,
    // the airflow measurement is the source; the machine owns the condition
    conditionSource: parts.airflow,
    conditionOf: parts.machine,
    conditionName: "DustExtractionLow",
    inputNode: parts.input,
    normalState,
  });
  // node-opcua's default message is a placeholder; say what happened and what is expected.
  alarm.calculateConditionInfo = (_state, isActive) => {
    const airflow = Number(parts.airflow.readValue().value.value);
    return isActive
      ? new ConditionInfo({
          message: `Dust extraction airflow low: ${airflow} m³/h (minimum ${DUST_AIRFLOW_MIN} m³/h); machine stopped`,
          severity: DUST_ALARM_SEVERITY,
          quality: StatusCodes.Good,
          retain: true,
        })
      : new ConditionInfo({
          message: `Dust extraction airflow back to normal: ${airflow} m³/h`,
          severity: 100,
          quality: StatusCodes.Good,
          retain: false,
        });
  };
  return alarm;
}
