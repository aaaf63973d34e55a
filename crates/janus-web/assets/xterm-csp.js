// Lets the vendored xterm.js render under our CSP (style-src 'self', no 'unsafe-inline'), without
// patching the vendored file. Loaded on the terminal and recording pages only, before terminal.js and
// player.js create terminals.
//
// xterm.js's DOM renderer writes its theme and cell dimensions into <style> elements and adds colours of
// 24-bit cells with setAttribute("style"); the CSP blocks both (and reports a violation). The same CSS is
// applied here through the CSSOM, which the CSP does not restrict: a <style> element becomes an inert
// placeholder whose text is mirrored into a constructed stylesheet, and a style attribute becomes a
// style.cssText assignment.
(function () {
  "use strict";
  if (window.__janusXtermCsp || !("adoptedStyleSheets" in document) || typeof CSSStyleSheet !== "function") return;
  window.__janusXtermCsp = true;

  var createElement = Document.prototype.createElement;
  Document.prototype.createElement = function (tag) {
    if (String(tag).toLowerCase() !== "style") return createElement.apply(this, arguments);
    var doc = this;
    var el = createElement.call(doc, "janus-style");
    el.hidden = true;
    var sheet = new CSSStyleSheet();
    var css = "";
    doc.adoptedStyleSheets = doc.adoptedStyleSheets.concat([sheet]);
    Object.defineProperty(el, "textContent", {
      get: function () { return css; },
      set: function (v) { css = String(v); sheet.replaceSync(css); },
    });
    el.remove = function () {
      doc.adoptedStyleSheets = doc.adoptedStyleSheets.filter(function (s) { return s !== sheet; });
      Element.prototype.remove.call(el);
    };
    return el;
  };

  var setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    if (String(name).toLowerCase() === "style") { this.style.cssText = String(value); return; }
    return setAttribute.apply(this, arguments);
  };
})();
