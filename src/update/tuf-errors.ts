/**
 * tuf-js keeps its error classes out of its index (6.0.2 exports only BaseFetcher, Updater and
 * TargetFile, and has no "exports" map), but its Updater tells "no newer root" (403/404) from a
 * failure only by `instanceof DownloadHTTPError`: the fetcher must throw that very class, so it
 * comes from the file tuf-js itself loads. The channel tests fail if a tuf-js update moves it.
 */
export { DownloadError, DownloadHTTPError } from "tuf-js/dist/error.js";
