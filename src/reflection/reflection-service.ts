import { create, fromBinary, toBinary, type DescEnum, type DescFile, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import {
  ServerReflection as ServerReflectionV1,
  ServerReflectionRequestSchema as RequestV1,
  ServerReflectionResponseSchema as ResponseV1,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionV1alpha,
  ServerReflectionRequestSchema as RequestV1alpha,
  ServerReflectionResponseSchema as ResponseV1alpha,
} from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** Longest name echoed back in an error, characters. */
const MAX_ECHOED = 200;

/**
 * The descriptors a reflection client can ask for: every file that declares one of
 * `services` (and the reflection services themselves), with every file they import.
 */
export class DescriptorIndex {
  readonly serviceNames: string[];
  readonly #files = new Map<string, DescFile>();
  readonly #bySymbol = new Map<string, DescFile>();
  readonly #extensions = new Map<string, { file: DescFile; numbers: number[] }>();

  constructor(services: readonly DescService[]) {
    const all = [...services, ServerReflectionV1, ServerReflectionV1alpha];
    this.serviceNames = [...new Set(all.map((s) => s.typeName))].sort();
    for (const s of all) this.#addFile(s.file);
  }

  /** The file and every file it imports, transitively, dependencies first. */
  closure(file: DescFile): DescFile[] {
    const out: DescFile[] = [];
    const seen = new Set<string>();
    const visit = (f: DescFile) => {
      if (seen.has(f.name)) return;
      seen.add(f.name);
      for (const d of f.dependencies) visit(d);
      out.push(f);
    };
    visit(file);
    // The asked-for file first, as clients expect.
    return [file, ...out.filter((f) => f !== file)];
  }

  fileByName(name: string): DescFile | undefined {
    return this.#files.get(name) ?? this.#files.get(name.replace(/\.proto$/, "") + ".proto");
  }

  fileBySymbol(symbol: string): DescFile | undefined {
    return this.#bySymbol.get(symbol.replace(/^\./, ""));
  }

  extensionsOf(typeName: string): { file: DescFile; numbers: number[] } | undefined {
    return this.#extensions.get(typeName.replace(/^\./, ""));
  }

  #addFile(file: DescFile): void {
    const name = `${file.name}.proto`;
    if (this.#files.has(name)) return;
    this.#files.set(name, file);
    for (const d of file.dependencies) this.#addFile(d);
    const addMessage = (m: DescMessage) => {
      this.#bySymbol.set(m.typeName, file);
      for (const f of m.fields) this.#bySymbol.set(`${m.typeName}.${f.name}`, file);
      for (const n of m.nestedMessages) addMessage(n);
      for (const e of m.nestedEnums) addEnum(e);
    };
    const addEnum = (e: DescEnum) => {
      this.#bySymbol.set(e.typeName, file);
      for (const v of e.values) this.#bySymbol.set(`${e.typeName}.${v.name}`, file);
    };
    for (const m of file.messages) addMessage(m);
    for (const e of file.enums) addEnum(e);
    for (const s of file.services) {
      this.#bySymbol.set(s.typeName, file);
      for (const m of s.methods) this.#bySymbol.set(`${s.typeName}.${m.name}`, file);
    }
    for (const x of file.extensions) {
      this.#bySymbol.set(x.typeName, file);
      const target = x.extendee.typeName;
      const entry = this.#extensions.get(target) ?? { file, numbers: [] };
      entry.numbers.push(x.number);
      this.#extensions.set(target, entry);
    }
  }
}

/** Answers one reflection request (the v1 shape; v1alpha is converted to it). */
export function answer(index: DescriptorIndex, req: ServerReflectionRequest): ServerReflectionResponse {
  const base = { validHost: req.host, originalRequest: req };
  const files = (file: DescFile | undefined, what: string) =>
    file
      ? create(ResponseV1, { ...base, messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto: index.closure(file).map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) } } })
      : notFound(base, what);
  const m = req.messageRequest;
  switch (m.case) {
    case "listServices":
      return create(ResponseV1, { ...base, messageResponse: { case: "listServicesResponse", value: { service: index.serviceNames.map((name) => ({ name })) } } });
    case "fileByFilename":
      return files(index.fileByName(m.value), `file ${quote(m.value)}`);
    case "fileContainingSymbol":
      return files(index.fileBySymbol(m.value), `symbol ${quote(m.value)}`);
    case "fileContainingExtension": {
      const ext = index.extensionsOf(m.value.containingType);
      return files(ext?.numbers.includes(m.value.extensionNumber) ? ext.file : undefined, `extension ${m.value.extensionNumber} of ${quote(m.value.containingType)}`);
    }
    case "allExtensionNumbersOfType": {
      if (!index.fileBySymbol(m.value)) return notFound(base, `type ${quote(m.value)}`);
      return create(ResponseV1, {
        ...base,
        messageResponse: { case: "allExtensionNumbersResponse", value: { baseTypeName: m.value, extensionNumber: index.extensionsOf(m.value)?.numbers ?? [] } },
      });
    }
    default:
      return create(ResponseV1, { ...base, messageResponse: { case: "errorResponse", value: { errorCode: Code.InvalidArgument, errorMessage: "the request names no question (set one of message_request)" } } });
  }
}

function notFound(base: { validHost: string; originalRequest: ServerReflectionRequest }, what: string): ServerReflectionResponse {
  return create(ResponseV1, { ...base, messageResponse: { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: `${what} not found` } } });
}

function quote(s: string): string {
  return JSON.stringify(s.length > MAX_ECHOED ? `${s.slice(0, MAX_ECHOED)}…` : s);
}

/**
 * gRPC server reflection (`grpc.reflection.v1` and `v1alpha`) as ordinary Connect services,
 * so `grpcurl`, `buf curl` and other reflection clients can list and call capvend's services
 * without a proto file. Public like health: it shows the schema only, never data.
 */
export function registerReflection(router: ConnectRouter, services: readonly DescService[]): ConnectRouter {
  const index = new DescriptorIndex(services);
  const v1: ServiceImpl<typeof ServerReflectionV1> = {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield answer(index, req);
    },
  };
  const v1alpha: ServiceImpl<typeof ServerReflectionV1alpha> = {
    async *serverReflectionInfo(requests) {
      // Same messages field for field: convert through the wire format.
      for await (const req of requests) {
        const res = answer(index, fromBinary(RequestV1, toBinary(RequestV1alpha, req)));
        yield fromBinary(ResponseV1alpha, toBinary(ResponseV1, res));
      }
    },
  };
  return router.service(ServerReflectionV1, v1).service(ServerReflectionV1alpha, v1alpha);
}
