/**
 * tuf-js keeps its error classes out of its index, but its Updater tells "no newer root" (403/404)
 * from a failure only by `instanceof DownloadHTTPError`: the fetcher must throw that very class.
 */
export { DownloadError, DownloadHTTPError } from "tuf-js/dist/error.js";
